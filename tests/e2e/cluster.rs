//! Several nodes, one service: strata processes with their own identities
//! (`STRATA_HOST`) on one S3 bucket (moto) and one PostgreSQL catalog.
//! One `backup list`, shared data stored once, every backup restored from
//! any node; a node killed mid-backup is finished by another node's
//! cleanup once its heartbeat is older than a lease on the catalog's
//! clock, and a node that was stopped past its lease cannot publish.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use strata_engine::repository::objects::s3::S3Store;
use strata_engine::repository::objects::ObjectStore;

use crate::harness::*;
use crate::s3_server::{Kind, S3Server};

struct Cluster {
    env: Env,
    catalog: String,
    server: S3Server,
}

impl Cluster {
    fn start(test: &str) -> Option<Cluster> {
        Self::start_on(test, Kind::Moto)
    }

    fn start_on(test: &str, kind: Kind) -> Option<Cluster> {
        let catalog = strata_engine::pg::testing::fresh_database(test).expect("database")?;
        let server = S3Server::start(test, kind)?;
        let env = Env {
            repository: server.url("repo"),
            ..Env::new()
        };
        Some(Cluster {
            env,
            catalog,
            server,
        })
    }

    /// `strata` as node `host`.
    fn node(&self, host: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args([
            "--catalog",
            &self.catalog,
            "--repository",
            &self.env.repository,
        ])
        .args(args)
        .env("STRATA_HOST", host)
        .env_remove("STRATA_CONFIG")
        .envs(self.server.env());
        cmd
    }

    fn run(&self, host: &str, args: &[&str]) -> Run {
        run(self.node(host, args))
    }

    fn spawn(&self, host: &str, args: &[&str], vars: &[(&str, &str)]) -> Child {
        self.node(host, args)
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata")
    }

    fn store(&self) -> S3Store {
        S3Store::connect(&self.server.parsed("repo")).expect("bucket")
    }

    /// Bytes of every pack in the bucket.
    fn pack_bytes(&self) -> u64 {
        let store = self.store();
        store
            .list_all("packs/")
            .expect("list")
            .iter()
            .map(|k| store.stat(k).expect("stat").map_or(0, |m| m.len))
            .sum()
    }
}

fn finished(child: Child) -> Run {
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A share of `common` (the same in every share) and `own` MiB of its own.
fn share(root: &Path, seed: u64, own: usize) {
    fs::create_dir_all(root.join("sub")).expect("share");
    fs::write(root.join("common.bin"), noise(6 << 20, 1)).expect("common");
    fs::write(root.join("sub/own.bin"), noise(own << 20, 1000 + seed)).expect("own");
    fs::write(root.join("sub/note.txt"), format!("share {seed}\n")).expect("note");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

const NODES: [&str; 4] = ["node-0", "node-1", "node-2", "node-3"];

#[test]
fn four_nodes_back_up_eight_shares_into_one_bucket_and_one_catalog() {
    let Some(c) = Cluster::start("four_nodes_back_up_eight_shares") else {
        return;
    };
    let shares: Vec<_> = (0..8)
        .map(|i| {
            let p = c.env.path(&format!("share{i}"));
            share(&p, i, 1);
            p
        })
        .collect();
    // Eight backups at once, two on each node.
    let running: Vec<Child> = shares
        .iter()
        .enumerate()
        .map(|(i, p)| c.spawn(NODES[i % 4], &["backup", "create", s(p), "-f", "json"], &[]))
        .collect();
    let made: Vec<serde_json::Value> = running
        .into_iter()
        .map(|child| finished(child).ok().json())
        .collect();
    let first_round = c.pack_bytes();
    // Chunks packed at once by several nodes may each be stored by every
    // one of them (at most once per backup running): the common file at
    // most eight times, each share's own data once.
    assert!(
        first_round <= (8 * 6 + 8 + 1) << 20,
        "{first_round} bytes of packs"
    );
    // One service: every node lists the eight, made on four nodes.
    for node in NODES {
        let listed = c.run(node, &["backup", "list", "-f", "json"]).ok().json();
        let listed = listed.as_array().expect("list");
        assert_eq!(listed.len(), 8, "{node}: {listed:?}");
    }
    let hosts: std::collections::BTreeSet<String> = made
        .iter()
        .map(|b| b["host"].as_str().expect("host").to_string())
        .collect();
    assert_eq!(hosts.len(), 4, "{hosts:?}");

    // In steady state a chunk is stored once, whichever node meets it:
    // new shares with the same common file store only their own bytes.
    for (i, node) in NODES.iter().enumerate() {
        let p = c.env.path(&format!("late{i}"));
        share(&p, 100 + i as u64, 1);
        let b = c
            .run(node, &["backup", "create", s(&p), "-f", "json"])
            .ok()
            .json();
        let new = b["new_bytes"].as_u64().expect("new_bytes");
        assert!(new < 2 << 20, "{node} stored {new} new bytes");
    }

    // Every backup restores byte-exact from another node than its own.
    for (i, (b, p)) in made.iter().zip(&shares).enumerate() {
        let target = c.env.path(&format!("restored{i}"));
        c.run(
            NODES[(i + 1) % 4],
            &[
                "backup",
                "restore",
                b["id"].as_str().expect("id"),
                "--target-dir",
                s(&target),
            ],
        )
        .ok();
        assert_same(&snapshot(p), &snapshot(&target));
    }

    // A share being backed up on one node is busy for every other.
    let busy = c.env.path("busy");
    share(&busy, 300, 2);
    let park = [("STRATA_FAILPOINTS", "repository.pack_published=sleep(2000)")];
    let holder = c.spawn("node-0", &["backup", "create", s(&busy)], &park);
    std::thread::sleep(Duration::from_millis(1200));
    c.run("node-1", &["backup", "create", s(&busy)])
        .fails(5, "backup_creating");
    finished(holder).ok();

    // A share with three backups, which a prune on one node thins while
    // the others delete, clean up and back up.
    let pruned = c.env.path("pruned");
    share(&pruned, 400, 1);
    for (round, node) in NODES.iter().take(3).enumerate() {
        fs::write(pruned.join("sub/round.txt"), format!("round {round}\n")).expect("round");
        c.run(node, &["backup", "create", s(&pruned)]).ok();
    }
    let pruned_tree = snapshot(&pruned);

    // Deletes, a prune, cleanups and backups on four nodes at once lose
    // nothing.
    let mut racing = Vec::new();
    racing.push(c.spawn(
        "node-3",
        &["backup", "prune", "--share", "pruned", "--keep-last", "1"],
        &[],
    ));
    for (i, b) in made.iter().enumerate().take(4) {
        let id = b["id"].as_str().expect("id").to_string();
        racing.push(c.spawn(NODES[i], &["backup", "delete", &id], &[]));
    }
    racing.push(c.spawn("node-1", &["cleanup"], &[]));
    for i in 0..2 {
        let p = c.env.path(&format!("racing{i}"));
        share(&p, 200 + i, 1);
        racing.push(c.spawn(NODES[2 + i as usize], &["backup", "create", s(&p)], &[]));
    }
    for child in racing {
        finished(child).ok();
    }
    let left = c
        .run("node-3", &["backup", "list", "-f", "json"])
        .ok()
        .json();
    let left = left.as_array().expect("list").clone();
    // Eight, four deleted, four late, one busy, two racing, one pruned.
    assert_eq!(left.len(), 8 - 4 + 4 + 1 + 2 + 1, "{left:?}");
    let kept: Vec<_> = left
        .iter()
        .filter(|b| {
            let shown = c
                .run(
                    "node-1",
                    &[
                        "backup",
                        "show",
                        b["ID"].as_str().expect("id"),
                        "-f",
                        "json",
                    ],
                )
                .ok()
                .json();
            shown["share_id"] == left_share_id(&c, "pruned")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let target = c.env.path("pruned-restored");
    c.run(
        "node-2",
        &[
            "backup",
            "restore",
            kept[0]["ID"].as_str().expect("id"),
            "--target-dir",
            s(&target),
        ],
    )
    .ok();
    assert_same(&pruned_tree, &snapshot(&target));
    for (i, b) in made.iter().enumerate().skip(4) {
        let target = c.env.path(&format!("after{i}"));
        c.run(
            "node-0",
            &[
                "backup",
                "restore",
                b["id"].as_str().expect("id"),
                "--target-dir",
                s(&target),
            ],
        )
        .ok();
        assert_same(&snapshot(&shares[i]), &snapshot(&target));
    }
    c.run("node-2", &["check", "--read-data"]).ok();
}

/// The id of the share named `name`.
fn left_share_id(c: &Cluster, name: &str) -> serde_json::Value {
    let shares = c
        .run("node-0", &["share", "list", "-f", "json"])
        .ok()
        .json();
    shares
        .as_array()
        .expect("shares")
        .iter()
        .find(|sh| sh["Name"] == name)
        .map(|sh| sh["ID"].clone())
        .expect("the share")
}

#[test]
fn a_dead_node_is_cleaned_up_by_another_and_a_stopped_one_cannot_publish() {
    let Some(c) = Cluster::start("a_dead_node_is_cleaned_up_by_another") else {
        return;
    };
    let killed_share = c.env.path("killed");
    share(&killed_share, 1, 2);
    let stopped_share = c.env.path("stopped");
    share(&stopped_share, 2, 2);
    // Each parks after its first pack is published, mid-backup.
    let park = [("STRATA_FAILPOINTS", "repository.pack_published=sleep(4000)")];
    let mut killed = c.spawn("node-a", &["backup", "create", s(&killed_share)], &park);
    let stopped = c.spawn("node-c", &["backup", "create", s(&stopped_share)], &park);
    std::thread::sleep(Duration::from_millis(2500));
    killed.kill().expect("kill -9");
    let _ = killed.wait();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(stopped.id() as i32).expect("pid"),
        rustix::process::Signal::STOP,
    )
    .expect("SIGSTOP");

    // Within the lease both count as running, for every node: nothing of
    // theirs is cleaned, no pack of theirs swept.
    let early = c
        .run("node-b", &["cleanup", "--wait", "0", "-f", "json"])
        .ok()
        .json();
    assert_eq!(early["operations_cleaned"], 0, "{early}");
    assert_eq!(early["packs_removed"], 0, "{early}");
    let busy = c
        .run("node-b", &["backup", "list", "-f", "json"])
        .ok()
        .json();
    assert!(
        busy.as_array()
            .expect("list")
            .iter()
            .all(|b| b["Status"] == "creating"),
        "{busy}"
    );

    // Past the lease, on the catalog's clock: both are dead to node-b,
    // whose cleanup finishes them by the single-node rules.
    std::thread::sleep(Duration::from_secs(32));
    let seen = c.run("node-b", &["check", "-f", "json"]).json();
    assert_eq!(seen["dead_operations"], 2, "{seen}");
    c.run("node-b", &["cleanup", "--wait", "0"]).ok();
    let seen = c.run("node-b", &["check", "-f", "json"]).json();
    assert_eq!(seen["dead_operations"], 0, "{seen}");
    let after = c
        .run("node-b", &["backup", "list", "-f", "json"])
        .ok()
        .json();
    for b in after.as_array().expect("list") {
        assert_eq!(b["Status"], "error", "{b}");
    }

    // The stopped node resumes: it finds its lease gone and stops before
    // it publishes anything.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(stopped.id() as i32).expect("pid"),
        rustix::process::Signal::CONT,
    )
    .expect("SIGCONT");
    let resumed = finished(stopped);
    assert_ne!(resumed.code, 0, "{}", resumed.stderr);
    let layers = c.store().list_all("layers/").expect("layers");
    assert!(layers.is_empty(), "published after its lease: {layers:?}");
    for b in after.as_array().expect("list") {
        let status = c
            .run(
                "node-a",
                &[
                    "backup",
                    "show",
                    b["ID"].as_str().expect("id"),
                    "-f",
                    "json",
                ],
            )
            .ok()
            .json();
        assert_eq!(status["status"], "error", "{status}");
    }
    // Both shares are free again, and a new backup of each works anywhere.
    for p in [&killed_share, &stopped_share] {
        c.run("node-b", &["backup", "create", s(p)]).ok();
    }
    c.run("node-a", &["check"]).ok();
}

/// A share recorded by one node is reached by another through its path
/// map: node-b mounts the export node-a registered elsewhere, finds the
/// share by its own directory, backs it up and restores into it there.
#[test]
fn a_node_reaches_shares_through_its_path_map() {
    let Some(c) = Cluster::start("a_node_reaches_shares_through_its_path_map") else {
        return;
    };
    let at_a = c.env.path("mount-a/projects");
    let at_b = c.env.path("mount-b/projects");
    share(&at_a, 7, 1);
    share(&at_b, 7, 1);
    let first = c
        .run("node-a", &["backup", "create", s(&at_a), "-f", "json"])
        .ok()
        .json();
    let config = c.env.path("node-b.toml");
    fs::write(
        &config,
        format!(
            "[path_map]\n\"{}\" = \"{}\"\n",
            s(&c.env.path("mount-a")),
            s(&c.env.path("mount-b"))
        ),
    )
    .expect("config");
    let with_map = |args: &[&str]| {
        let mut all = vec!["--config", s(&config)];
        all.extend_from_slice(args);
        c.run("node-b", &all)
    };
    // The same share, found by node-b's own directory.
    let second = with_map(&["backup", "create", s(&at_b), "-f", "json"])
        .ok()
        .json();
    assert_eq!(second["share_id"], first["share_id"], "{second}");
    let shares = with_map(&["share", "list", "-f", "json"]).ok().json();
    assert_eq!(shares.as_array().map(Vec::len), Some(1), "{shares}");
    // A restore in place writes node-b's mount, not node-a's.
    fs::remove_file(at_b.join("sub/own.bin")).expect("remove");
    let before_a = snapshot(&at_a);
    with_map(&["backup", "restore", first["id"].as_str().expect("id")]).ok();
    assert_same(&before_a, &snapshot(&at_b));
    assert_same(&before_a, &snapshot(&at_a));
    // Without the map, node-b does not know the directory as the share.
    let unmapped = c
        .run("node-b", &["backup", "create", s(&at_b), "-f", "json"])
        .ok()
        .json();
    assert_ne!(unmapped["share_id"], first["share_id"], "{unmapped}");
}

impl Cluster {
    /// `strata serve` as node `host`, on a free loopback port.
    fn serve(&self, host: &str) -> crate::rest::Server {
        use std::io::BufRead;
        let root = self.env.path("share-root");
        fs::create_dir_all(&root).expect("share root");
        let mut child = self
            .node(
                host,
                &["serve", "--listen", "127.0.0.1:0", "--share-root", s(&root)],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("serve exited before listening")
                .expect("line");
            if let Some(a) = line.strip_prefix("listening on http://") {
                break a.to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        crate::rest::Server { child, addr }
    }
}

/// `strata serve` on two nodes against one catalog is one REST service:
/// a backup asked of one is seen, finished and deleted through the other.
#[test]
fn two_servers_on_one_catalog_are_one_service() {
    let Some(c) = Cluster::start("two_servers_on_one_catalog_are_one_service") else {
        return;
    };
    const TOKEN: &str = "alice:proj-a";
    let dir = c.env.path("data");
    share(&dir, 3, 1);
    let created = c
        .run(
            "node-0",
            &[
                "--project",
                "proj-a",
                "share",
                "create",
                "--name",
                "data",
                "--path",
                s(&dir),
                "-f",
                "json",
            ],
        )
        .ok()
        .json();
    let share_id = created["id"].as_str().expect("share id").to_string();
    let one = c.serve("node-1");
    let two = c.serve("node-2");
    let body = serde_json::json!({"share_backup": {"share_id": share_id, "name": "nightly"}});
    let made = one.call(
        "POST",
        "/v2/share-backups",
        Some(TOKEN),
        Some(&body.to_string()),
    );
    assert_eq!(made.status, 202, "{}", made.text);
    let id = made.json["share_backup"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // The other server follows it to the end, and lists the same.
    let done = two.wait_backup(TOKEN, &id, "available");
    assert_eq!(done["name"], "nightly", "{done}");
    for server in [&one, &two] {
        let listed = server.call("GET", "/v2/share-backups/detail", Some(TOKEN), None);
        let ids: Vec<&str> = listed.json["share_backups"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|b| b["id"].as_str())
            .collect();
        assert_eq!(ids, [id.as_str()], "{}", listed.text);
    }
    let gone = two.call(
        "DELETE",
        &format!("/v2/share-backups/{id}"),
        Some(TOKEN),
        None,
    );
    assert_eq!(gone.status, 202, "{}", gone.text);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = one.call("GET", &format!("/v2/share-backups/{id}"), Some(TOKEN), None);
        if r.status == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.text);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// With the catalog keeping the locks, a bucket whose server lets racing
/// conditional creates through (s3s-fs) is a repository like any other:
/// no lease is put in it, only the name of the catalog that keeps them.
#[test]
fn with_a_shared_catalog_the_locks_live_in_the_catalog() {
    let Some(c) = Cluster::start_on("the_locks_live_in_the_catalog", Kind::S3sFs) else {
        return;
    };
    assert!(!c.store().conditions_hold());
    let dir = c.env.path("data");
    share(&dir, 5, 2);
    let park = [("STRATA_FAILPOINTS", "repository.pack_published=sleep(1500)")];
    let running = c.spawn(
        "node-a",
        &["backup", "create", s(&dir), "-f", "json"],
        &park,
    );
    std::thread::sleep(Duration::from_millis(1000));
    // Only the name of the catalog that keeps them.
    let locks = c.store().list_all("locks/").expect("list");
    assert_eq!(
        locks.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["locks/kept-by"],
        "locks in the bucket"
    );
    let made = finished(running).ok().json();
    // A sweep on another node waits for the lease it finds in the catalog.
    c.run("node-b", &["cleanup"]).ok();
    let target = c.env.path("restored");
    c.run(
        "node-b",
        &[
            "backup",
            "restore",
            made["id"].as_str().expect("id"),
            "--target-dir",
            s(&target),
        ],
    )
    .ok();
    assert_same(&snapshot(&dir), &snapshot(&target));
    c.run("node-a", &["check", "--read-data"]).ok();
    // A process of another catalog would not see these locks: the
    // repository names the catalog that keeps them, and others keep away.
    let other_db = strata_engine::pg::testing::fresh_database("the_locks_live_in_the_catalog")
        .expect("database")
        .expect("a server");
    let sqlite = c.env.path("elsewhere.db");
    for catalog in [other_db.as_str(), s(&sqlite)] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args(["--catalog", catalog, "--repository", &c.env.repository])
            .args(["backup", "list"])
            .envs(c.server.env());
        run(cmd).fails(5, "are kept by catalog");
    }
}
