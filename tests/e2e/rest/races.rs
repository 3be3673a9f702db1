//! The REST API raced: requests released together by a barrier, many
//! rounds; slow clients; reads that must not write.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

const A: &str = "alice:proj-a";
const ADMIN: &str = "admin:proj-a";

fn created(s: &Server, share: &str) -> String {
    let body = json!({"share_backup": {"share_id": share}}).to_string();
    let r = s.call("POST", "/v2/share-backups", Some(A), Some(&body));
    r.expect(202);
    let id = r.json["share_backup"]["id"].as_str().unwrap().to_string();
    s.wait_backup(A, &id, "available");
    id
}

fn status_of_share(s: &Server, share: &str) -> String {
    let r = s.call("GET", &format!("/v2/shares/{share}"), Some(A), None);
    r.json["share"]["status"].as_str().unwrap_or("").to_string()
}

/// Runs each request on its own thread, all released at once; their
/// statuses in order.
fn together(
    s: &Arc<Server>,
    calls: Vec<(&'static str, String, &'static str, Option<String>)>,
) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(calls.len()));
    let threads: Vec<_> = calls
        .into_iter()
        .map(|(method, path, token, body)| {
            let (s, barrier) = (Arc::clone(s), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                s.call(method, &path, Some(token), body.as_deref()).status
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn a_restore_raced_by_a_reset_and_a_delete_never_leaves_its_target_busy() {
    let env = Env::new();
    let (source, _) = share_with_tree(&env, "proj-a", "source");
    let (target, _) = share_with_tree(&env, "proj-a", "target");
    let s = Arc::new(Server::start(&env, &[], &[]));
    for round in 0..6 {
        let b = created(&s, &source);
        let action = format!("/v2/share-backups/{b}/action");
        let statuses = together(
            &s,
            vec![
                (
                    "POST",
                    action.clone(),
                    A,
                    Some(json!({"restore": target}).to_string()),
                ),
                (
                    "POST",
                    action,
                    ADMIN,
                    Some(r#"{"reset_status": {"status": "available"}}"#.into()),
                ),
                ("DELETE", format!("/v2/share-backups/{b}"), A, None),
            ],
        );
        // A restore that comes after the delete finds no backup: 404.
        assert!(
            [202, 400, 404, 409].contains(&statuses[0]),
            "round {round}: {statuses:?}"
        );
        assert!(
            [202, 404].contains(&statuses[1]),
            "round {round}: {statuses:?}"
        );
        assert!(
            [202, 400, 409].contains(&statuses[2]),
            "round {round}: {statuses:?}"
        );
        // Whatever won, the target is given back (not left restoring).
        let deadline = Instant::now() + Duration::from_secs(60);
        let settled = loop {
            let st = status_of_share(&s, &target);
            if st != "backup_restoring" {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the target stays busy"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            ["available", "backup_restoring_error"].contains(&settled.as_str()),
            "round {round}: {settled}"
        );
        if settled != "available" {
            let reset = r#"{"reset_status": {"status": "available"}}"#;
            s.call(
                "POST",
                &format!("/v2/shares/{target}/action"),
                Some(ADMIN),
                Some(reset),
            )
            .expect(202);
        }
        // The source takes backups again (a leftover backup, if the delete
        // lost, is deleted now that nothing restores it).
        let left = s.call("GET", &format!("/v2/share-backups/{b}"), Some(A), None);
        if left.status == 200 {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let d = s.call("DELETE", &format!("/v2/share-backups/{b}"), Some(A), None);
                // Deleted (or gone meanwhile: the raced delete finished).
                if d.status == 202 || d.status == 404 {
                    break;
                }
                let now = s.call("GET", &format!("/v2/share-backups/{b}"), Some(A), None);
                assert!(
                    Instant::now() < deadline,
                    "round {round}: {b} is never deletable: {} {}",
                    d.text,
                    now.text
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // Cleanup finds nothing left busy.
    let cleaned = env.strata(&["cleanup", "-f", "json"]).ok().json();
    assert_eq!(cleaned["shares_released"], 0, "{cleaned}");
}

#[test]
fn a_backup_racing_the_delete_of_its_parent_builds_on_another_or_conflicts() {
    let env = Env::new();
    let (share, dir) = share_with_tree(&env, "proj-a", "raced");
    let s = Arc::new(Server::start(&env, &[], &[]));
    created(&s, &share);
    for round in 0..12 {
        std::fs::write(dir.join(format!("round-{round}")), noise(50_000, round)).unwrap();
        let latest = created(&s, &share);
        let statuses = together(
            &s,
            vec![
                (
                    "POST",
                    "/v2/share-backups".into(),
                    A,
                    Some(json!({"share_backup": {"share_id": share}}).to_string()),
                ),
                ("DELETE", format!("/v2/share-backups/{latest}"), A, None),
            ],
        );
        assert!(
            [202, 409].contains(&statuses[0]),
            "round {round}: create {statuses:?}"
        );
        assert!(
            [202, 400, 409].contains(&statuses[1]),
            "round {round}: delete {statuses:?}"
        );
        // Every backup settles available, and none builds on a deleted one.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let all = s.call("GET", "/v2/share-backups/detail", Some(A), None);
            let list = all.json["share_backups"].as_array().unwrap().clone();
            if list.iter().all(|b| b["status"] == "available") {
                let ids: Vec<&str> = list.iter().filter_map(|b| b["id"].as_str()).collect();
                for b in &ids {
                    let shown =
                        env.strata(&["--project", "proj-a", "backup", "show", b, "-f", "json"]);
                    let parent = shown.ok().json()["parent_id"].clone();
                    if let Some(p) = parent.as_str() {
                        assert!(
                            ids.contains(&p),
                            "round {round}: {b} builds on a deleted {p}"
                        );
                    }
                }
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: {}", all.text);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn slow_clients_are_cut_off_and_the_others_served() {
    let env = Env::new();
    let s = Server::start(&env, &[], &["--max-connections", "60"]);
    // Fifty clients that send half a request and then nothing.
    let slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut c = TcpStream::connect(&s.addr).unwrap();
            c.write_all(b"GET /v2/share-backups HTTP/1.1\r\nHost: x\r\nX-Au")
                .unwrap();
            c
        })
        .collect();
    let asked = Instant::now();
    s.call("GET", "/", None, None).expect(300);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    // Each is closed once the header deadline passes.
    for mut c in slow {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
    }
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(25),
        "slow clients held for {took:?}"
    );
    // Past the bound on connections, one more is closed at once.
    let held: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(&s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(&s.addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert!(
        matches!(extra.read(&mut buf), Ok(0) | Err(_)),
        "the 61st was served"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.call("GET", "/", None, None).status != 300 {
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_administrator_resets_a_shares_status_and_reads_write_nothing() {
    let env = Env::new();
    let (share, _) = share_with_tree(&env, "proj-a", "stuck");
    env.strata(&[
        "--project",
        "proj-a",
        "share",
        "set",
        "stuck",
        "--status",
        "backup_restoring",
    ])
    .ok();
    let s = Server::start(&env, &[], &[]);
    let reset = r#"{"reset_status": {"status": "available"}}"#;
    let path = format!("/v2/shares/{share}/action");
    s.call("POST", &path, Some(A), Some(reset)).expect(403);
    s.call(
        "POST",
        &path,
        Some(ADMIN),
        Some(r#"{"reset_status": {"status": "nope"}}"#),
    )
    .expect(400);
    s.call("POST", &path, Some(ADMIN), Some(reset)).expect(202);
    assert_eq!(status_of_share(&s, &share), "available");
    // Reads by 200 projects the catalog has never seen record none of them.
    let projects = || {
        let db = rusqlite::Connection::open(env.path("catalog.db")).unwrap();
        db.query_row("SELECT COUNT(*) FROM projects", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    let before = projects();
    for i in 0..200 {
        let token = format!("u:p{i}");
        s.call("GET", "/v2/share-backups", Some(&token), None)
            .expect(200);
    }
    assert_eq!(projects(), before);
}
