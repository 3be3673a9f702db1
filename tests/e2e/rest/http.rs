//! Every status code of the share-backup API, project isolation, bad input,
//! concurrent backups, and SIGTERM in the middle of a backup.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;

const A: &str = "alice:proj-a";
const B: &str = "bob:proj-b";
const ADMIN: &str = "admin:proj-a";

fn create_backup(s: &Server, token: &str, share: &str, name: &str) -> Reply {
    let body = json!({"share_backup": {"share_id": share, "name": name}}).to_string();
    s.call("POST", "/v2/share-backups", Some(token), Some(&body))
}

#[test]
fn versions_auth_and_microversions() {
    let env = Env::new();
    let s = Server::start(&env, &[], &[]);
    let v = s.raw("GET", "/", &[], None);
    assert_eq!(v.status, 300, "{}", v.text);
    assert_eq!(v.json["versions"][0]["version"], "2.91");
    assert_eq!(v.json["versions"][0]["min_version"], "2.0");
    // No token, an unreadable one: 401.
    s.call("GET", "/v2/share-backups", None, None).expect(401);
    s.call("GET", "/v2/share-backups", Some("a:b:c"), None)
        .expect(401);
    // Outside the supported range: 406; share backups need 2.80 and the
    // experimental header, or they do not exist (404).
    for bad in ["2.92", "1.0", "3.0"] {
        let r = s.raw(
            "GET",
            "/v2/share-backups",
            &[("X-Auth-Token", A), ("X-OpenStack-Manila-API-Version", bad)],
            None,
        );
        r.expect(406);
    }
    let r = s.raw(
        "GET",
        "/v2/share-backups",
        &[
            ("X-Auth-Token", A),
            ("X-OpenStack-Manila-API-Version", "2.91"),
        ],
        None,
    );
    r.expect(404);
    let r = s.raw(
        "GET",
        "/v2/share-backups",
        &[
            ("X-Auth-Token", A),
            ("X-OpenStack-Manila-API-Version", "2.79"),
            ("X-OpenStack-Manila-API-Experimental", "True"),
        ],
        None,
    );
    r.expect(404);
    let ok = s.call("GET", "/v2/share-backups", Some(A), None);
    ok.expect(200);
    assert_eq!(ok.header("x-openstack-manila-api-version"), Some("2.91"));
    assert_eq!(ok.json, json!({"share_backups": []}));
    // The same paths under the project id; another project's id is refused.
    s.call("GET", "/v2/proj-a/share-backups/detail", Some(A), None)
        .expect(200);
    s.call("GET", "/v2/proj-b/share-backups", Some(A), None)
        .expect(400);
    s.call("GET", "/v2/no-such-thing", Some(A), None)
        .expect(404);
}

#[test]
fn token_files_name_users_projects_and_roles() {
    let env = Env::new();
    let file = env.path("tokens.json");
    std::fs::write(
        &file,
        r#"{"t-alice": {"user": "alice", "project": "proj-a"},
            "t-root": {"user": "root", "project": "ops", "roles": ["admin"]}}"#,
    )
    .unwrap();
    let s = Server::start(
        &env,
        &[],
        &["--auth", "tokens", "--token-file", file.to_str().unwrap()],
    );
    s.call("GET", "/v2/share-backups", Some("t-alice"), None)
        .expect(200);
    // A noauth token means nothing here.
    s.call("GET", "/v2/share-backups", Some(A), None)
        .expect(401);
    let (share, _) = share_with_tree(&env, "proj-a", "tok");
    let b = create_backup(&s, "t-alice", &share, "one");
    b.expect(202);
    let id = b.json["share_backup"]["id"].as_str().unwrap().to_string();
    s.wait_backup("t-alice", &id, "available");
    // An administrator of another project reaches it, and sees the host.
    let seen = s.call(
        "GET",
        &format!("/v2/share-backups/{id}"),
        Some("t-root"),
        None,
    );
    seen.expect(200);
    assert!(seen.json["share_backup"].get("host").is_some());
    let own = s.call(
        "GET",
        &format!("/v2/share-backups/{id}"),
        Some("t-alice"),
        None,
    );
    assert!(own.json["share_backup"].get("host").is_none());
}

#[test]
fn backups_over_http_follow_manila() {
    let env = Env::new();
    let s = Server::start(&env, &[], &[]);
    let (share, dir) = share_with_tree(&env, "proj-a", "data");
    let (other, _) = share_with_tree(&env, "proj-b", "theirs");

    // Bad requests change nothing.
    let post = |body: &str| s.call("POST", "/v2/share-backups", Some(A), Some(body));
    post("").expect(422);
    post("{not json").expect(400);
    post("[1, 2]").expect(400);
    post(r#"{"share_backup": {"name": "x"}}"#).expect(400);
    post(r#"{"share_backup": {"share_id": 7}}"#).expect(400);
    post(&json!({"share_backup": {"share_id": share, "colour": "red"}}).to_string()).expect(400);
    post(
        &json!({"share_backup": {"share_id": share, "backup_options": {"compress": "yes"}}})
            .to_string(),
    )
    .expect(400);
    post(
        &json!({"share_backup": {"share_id": share, "backup_options": {"backup_type": "nope"}}})
            .to_string(),
    )
    .expect(400);
    post(r#"{"share_backup": {"share_id": "00000000-0000-0000-0000-000000000000"}}"#).expect(400);
    // Another project's share does not exist for this caller.
    post(&json!({"share_backup": {"share_id": other}}).to_string()).expect(400);
    let huge = format!(
        r#"{{"share_backup": {{"name": "{}"}}}}"#,
        "x".repeat(100_000)
    );
    post(&huge).expect(413);
    assert!(env.backups().is_empty(), "nothing was recorded");

    // Accepted: recorded `creating` with progress "0", then available.
    let r = create_backup(&s, A, &share, "first");
    r.expect(202);
    let b = &r.json["share_backup"];
    assert_eq!(b["status"], "creating", "{b}");
    assert_eq!(b["progress"], "0");
    assert_eq!(b["backup_type"], Value::Null);
    let id = b["id"].as_str().unwrap().to_string();
    let done = s.wait_backup(A, &id, "available");
    assert_eq!(done["progress"], "100");
    assert!(done["size"].is_u64() && done["restore_progress"].is_string());
    // The CLI sees what the API made.
    let listed = env.strata(&["--project", "proj-a", "backup", "list", "-f", "json"]);
    assert!(listed.ok().stdout.contains(&id));

    // A busy share: 409.
    env.strata(&[
        "--project",
        "proj-a",
        "share",
        "set",
        "data",
        "--status",
        "backup_creating",
    ])
    .ok();
    create_backup(&s, A, &share, "busy").expect(409);
    env.strata(&[
        "--project",
        "proj-a",
        "share",
        "set",
        "data",
        "--status",
        "available",
    ])
    .ok();

    // Update, list with filters, show; unknown ids: 404.
    let put = json!({"share_backup": {"name": "renamed", "description": "nightly"}}).to_string();
    let u = s.call(
        "PUT",
        &format!("/v2/share-backups/{id}"),
        Some(A),
        Some(&put),
    );
    u.expect(200);
    assert_eq!(u.json["share_backup"]["name"], "renamed");
    s.call(
        "PUT",
        &format!("/v2/share-backups/{id}"),
        Some(A),
        Some("{}"),
    )
    .expect(400);
    let found = s.call(
        "GET",
        "/v2/share-backups/detail?name~=ENAM&status=available",
        Some(A),
        None,
    );
    assert_eq!(
        found.json["share_backups"].as_array().map(Vec::len),
        Some(1),
        "{}",
        found.text
    );
    let none = s.call("GET", "/v2/share-backups?description=other", Some(A), None);
    assert_eq!(none.json["share_backups"], json!([]));
    s.call("GET", "/v2/share-backups?limit=x", Some(A), None)
        .expect(400);
    s.call("GET", "/v2/share-backups?sort_key=colour", Some(A), None)
        .expect(400);
    s.call("GET", "/v2/share-backups?share_id=nope", Some(A), None)
        .expect(400);
    s.call(
        "GET",
        "/v2/share-backups/00000000-0000-0000-0000-000000000000",
        Some(A),
        None,
    )
    .expect(404);
    s.call("GET", "/v2/share-backups/not-a-uuid", Some(A), None)
        .expect(404);

    // Project isolation: B sees nothing of A's, even asking for all.
    s.call("GET", &format!("/v2/share-backups/{id}"), Some(B), None)
        .expect(404);
    s.call("DELETE", &format!("/v2/share-backups/{id}"), Some(B), None)
        .expect(404);
    let all = s.call("GET", "/v2/share-backups?all_tenants=1", Some(B), None);
    assert_eq!(all.json["share_backups"], json!([]));
    let all = s.call("GET", "/v2/share-backups?all_tenants=1", Some(ADMIN), None);
    assert_eq!(all.json["share_backups"].as_array().map(Vec::len), Some(1));

    // Restore into the source: the tree comes back byte for byte.
    let pristine = env.path("pristine");
    env.strata(&[
        "--project",
        "proj-a",
        "backup",
        "restore",
        &id,
        "--target-dir",
        pristine.to_str().unwrap(),
    ])
    .ok();
    std::fs::write(dir.join("added-later"), b"x").unwrap();
    let act = |token: &str, body: &str| {
        s.call(
            "POST",
            &format!("/v2/share-backups/{id}/action"),
            Some(token),
            Some(body),
        )
    };
    let r = act(A, r#"{"restore": null}"#);
    r.expect(202);
    assert_eq!(r.json["restore"]["share_id"], json!(share));
    s.wait_backup(A, &id, "available");
    s.wait_share(A, &share, "available");
    assert!(
        dir.join("added-later").exists(),
        "a restore keeps other files"
    );
    std::fs::remove_file(dir.join("added-later")).unwrap();
    same_tree(&pristine, &dir);
    // Into another project's share: 403; a share that does not exist: 404.
    act(A, &json!({"restore": other}).to_string()).expect(403);
    act(A, r#"{"restore": "00000000-0000-0000-0000-000000000000"}"#).expect(404);
    act(A, r#"{"restore": 5}"#).expect(400);
    act(A, r#"{"explode": {}}"#).expect(400);
    act(
        A,
        r#"{"restore": null, "reset_status": {"status": "error"}}"#,
    )
    .expect(400);

    // reset_status is an administrator's.
    act(A, r#"{"reset_status": {"status": "error"}}"#).expect(403);
    act(ADMIN, r#"{"reset_status": {"status": "sideways"}}"#).expect(400);
    act(ADMIN, r#"{"reset_status": {"status": "creating"}}"#).expect(202);
    // Deleting a backup that is not available or error: 400.
    s.call("DELETE", &format!("/v2/share-backups/{id}"), Some(A), None)
        .expect(400);
    act(ADMIN, r#"{"reset_status": {"status": "available"}}"#).expect(202);

    // A quota: 413.
    env.strata(&["--project", "proj-a", "quota", "set", "--backups", "1"])
        .ok();
    create_backup(&s, A, &share, "over").expect(413);
    env.strata(&["--project", "proj-a", "quota", "set", "--backups", "-1"])
        .ok();

    // Delete: 202, then gone.
    s.call("DELETE", &format!("/v2/share-backups/{id}"), Some(A), None)
        .expect(202);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s
        .call("GET", &format!("/v2/share-backups/{id}"), Some(A), None)
        .status
        != 404
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup was not deleted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shares_as_the_client_needs_them() {
    let env = Env::new();
    let s = Server::start(&env, &[], &[]);
    let (share, _) = share_with_tree(&env, "proj-a", "web");
    let r = s.call("GET", &format!("/v2/shares/{share}"), Some(A), None);
    r.expect(200);
    assert_eq!(r.json["share"]["name"], "web");
    assert_eq!(r.json["share"]["is_soft_deleted"], false);
    s.call("GET", "/v2/shares/web", Some(A), None).expect(404);
    s.call("GET", &format!("/v2/shares/{share}"), Some(B), None)
        .expect(404);
    let listed = s.call(
        "GET",
        "/v2/shares/detail?all_tenants=1&is_public=True",
        Some(A),
        None,
    );
    assert_eq!(listed.json["shares"].as_array().map(Vec::len), Some(1));
    let soft = s.call(
        "GET",
        "/v2/shares/detail?all_tenants=1&is_public=True&is_soft_deleted=True",
        Some(A),
        None,
    );
    assert_eq!(soft.json["shares"], json!([]), "no share shows twice");
    let locs = s.call(
        "GET",
        &format!("/v2/shares/{share}/export_locations"),
        Some(A),
        None,
    );
    assert!(locs.json["export_locations"][0]["path"].is_string());
    s.call("GET", "/v2/types/default", Some(A), None)
        .expect(200);

    // New shares under the share root, from nothing or from a backup.
    let made = s.call(
        "POST",
        "/v2/shares",
        Some(A),
        Some(r#"{"share": {"share_proto": "NFS", "size": 1, "name": "fresh"}}"#),
    );
    made.expect(202);
    assert_eq!(made.json["share"]["status"], "available");
    // Its directory under the share root is named after it.
    let made_id = made.json["share"]["id"].as_str().unwrap();
    let made_path = made.json["share"]["export_location"].as_str().unwrap();
    assert!(
        made_path.ends_with(&format!("share-root/{made_id}")),
        "{made_path}"
    );
    s.call(
        "POST",
        "/v2/shares",
        Some(A),
        Some(r#"{"share": {"share_proto": "NFS"}}"#),
    )
    .expect(400);
    s.call(
        "POST",
        "/v2/shares",
        Some(A),
        Some(r#"{"share": {"share_proto": "XYZ", "size": 1}}"#),
    )
    .expect(400);
    let b = create_backup(&s, A, &share, "src");
    let id = b.json["share_backup"]["id"].as_str().unwrap().to_string();
    s.wait_backup(A, &id, "available");
    let body =
        json!({"share": {"share_proto": "NFS", "name": "copy", "backup_id": id}}).to_string();
    let copy = s.call("POST", "/v2/shares", Some(A), Some(&body));
    copy.expect(202);
    let copy_id = copy.json["share"]["id"].as_str().unwrap().to_string();
    s.wait_share(A, &copy_id, "available");
    let shown = s.call("GET", &format!("/v2/shares/{copy_id}"), Some(A), None);
    assert_eq!(shown.json["share"]["source_backup_id"], json!(id));
    let path = shown.json["share"]["export_location"]
        .as_str()
        .unwrap()
        .to_string();
    same_tree(&env.path("web"), std::path::Path::new(&path));
}

#[test]
fn twenty_backups_over_four_shares_all_end_available() {
    let env = Env::new();
    let s = Server::start(&env, &[], &["--workers", "4"]);
    let shares: Vec<String> = (0..4)
        .map(|i| share_with_tree(&env, "proj-a", &format!("s{i}")).0)
        .collect();
    let polling = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|scope| {
        let poller = scope.spawn(|| {
            let mut polls = 0;
            while polling.load(std::sync::atomic::Ordering::SeqCst) {
                s.call("GET", "/v2/share-backups/detail", Some(A), None)
                    .expect(200);
                polls += 1;
            }
            polls
        });
        // Each share takes its five backups one after another (a share
        // with a backup running is busy: 409, and the share is given back
        // just after its backup is `available`), the four shares at once.
        let workers: Vec<_> = shares
            .iter()
            .map(|share| {
                let s = &s;
                scope.spawn(move || {
                    for n in 0..5 {
                        let r = create_backup(s, A, share, &format!("n{n}"));
                        r.expect(202);
                        let id = r.json["share_backup"]["id"].as_str().unwrap().to_string();
                        s.wait_backup(A, &id, "available");
                        s.wait_share(A, share, "available");
                    }
                })
            })
            .collect();
        let joined: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        // The poller stops whatever became of the others.
        polling.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(poller.join().unwrap() > 0);
        assert!(joined.iter().all(Result::is_ok), "a share's backups failed");
    });
    let all = s.call("GET", "/v2/share-backups/detail", Some(A), None);
    let list = all.json["share_backups"].as_array().unwrap();
    assert_eq!(list.len(), 20);
    assert!(
        list.iter().all(|b| b["status"] == "available"),
        "{}",
        all.text
    );
}

#[test]
fn sigterm_mid_backup_then_restart_cleans_up_as_for_a_killed_cli() {
    let env = Env::new();
    let share = share_of_noise(&env, "proj-a", "big", 3);
    // The backup is held mid-way (a pack published, no layer yet) until
    // the server is stopped: no guess at how long a backup takes.
    let log = env.path("points.log");
    let log_str = log.to_str().unwrap();
    let mut s = Server::start_with(
        &env,
        &[],
        &["--grace", "0"],
        &[
            (
                "STRATA_FAILPOINTS",
                "repository.pack_published=sleep(60000)",
            ),
            ("STRATA_FAILPOINT_LOG", log_str),
        ],
    );
    let r = create_backup(&s, A, &share, "cut");
    r.expect(202);
    let id = r.json["share_backup"]["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("repository.pack_published")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never got going"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = s.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = s.child.wait().unwrap();
    assert!(
        exited.success(),
        "serve exits cleanly on SIGTERM: {exited:?}"
    );
    // The new server cleans up what the old one left, as for a killed CLI.
    let s2 = Server::start(&env, &[], &[]);
    let b = s2.call("GET", &format!("/v2/share-backups/{id}"), Some(A), None);
    assert_eq!(b.json["share_backup"]["status"], "error", "{}", b.text);
    s2.wait_share(A, &share, "available");
    let again = create_backup(&s2, A, &share, "after");
    again.expect(202);
    let again = again.json["share_backup"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s2.wait_backup(A, &again, "available");
    drop(s);
}

#[test]
fn a_request_is_answered_while_every_worker_is_busy() {
    let env = Env::new();
    let ids: Vec<String> = ["slow", "next"]
        .iter()
        .map(|name| share_of_noise(&env, "proj-a", name, 3))
        .collect();
    let slow = env.slow_config();
    let s = Server::start(
        &env,
        &["--config", slow.to_str().unwrap()],
        &["--workers", "1"],
    );
    let first = create_backup(&s, A, &ids[0], "first");
    first.expect(202);
    let first = first.json["share_backup"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The only worker is busy: the next backup is still recorded and
    // answered at once, and waits its turn.
    let asked = std::time::Instant::now();
    let second = create_backup(&s, A, &ids[1], "second");
    second.expect(202);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let running = s.call("GET", &format!("/v2/share-backups/{first}"), Some(A), None);
    assert_eq!(
        running.json["share_backup"]["status"], "creating",
        "{}",
        running.text
    );
    let second = second.json["share_backup"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_backup(A, &first, "available");
    s.wait_backup(A, &second, "available");
}
