//! One rule, every door: the CLI and the REST API given the same inputs
//! reach the same outcome (the engine decides; each front end renders).

use serde_json::json;

use super::*;

const A: &str = "alice:proj-a";

/// The REST status that renders the error a CLI exit code renders.
fn rest_status_for(cli_code: i32) -> &'static [u16] {
    match cli_code {
        0 => &[200, 202],
        2 => &[400],
        4 => &[404],
        5 => &[400, 409],
        6 => &[413],
        10 => &[403],
        _ => &[500],
    }
}

#[test]
fn the_cli_and_the_rest_api_agree_on_every_refusal() {
    let env = Env::new();
    let (share, dir) = share_with_tree(&env, "proj-a", "same");
    let s = Server::start(&env, &[], &[]);
    let p = |args: &[&str]| {
        let mut all = vec!["--project", "proj-a"];
        all.extend_from_slice(args);
        env.strata(&all)
    };
    let full = p(&["backup", "create", "-f", "json", "same"]).ok().json();
    let full = full["id"].as_str().unwrap().to_string();
    p(&["backup", "create", "--incremental", "same"]).ok();
    let d = dir.to_str().unwrap();
    let backups = format!("/v2/share-backups/{full}");
    type Case<'a> = (&'a str, Vec<&'a str>, &'a str, String, Option<String>);
    let cases: Vec<Case<'_>> = vec![
        (
            "a share name with an escape",
            vec![
                "share",
                "create",
                "--name",
                "e\u{1b}]0;x",
                "--path",
                d,
                "--size",
                "1",
            ],
            "POST",
            "/v2/shares".into(),
            Some(
                json!({"share": {"share_proto": "NFS", "size": 1, "name": "e\u{1b}]0;x"}})
                    .to_string(),
            ),
        ),
        (
            "a share larger than Manila allows",
            vec![
                "share",
                "create",
                "--name",
                "huge",
                "--path",
                d,
                "--size",
                "2147483648",
            ],
            "POST",
            "/v2/shares".into(),
            Some(
                json!({"share": {"share_proto": "NFS", "size": 2147483648u64, "name": "huge"}})
                    .to_string(),
            ),
        ),
        (
            "a backup description with a newline",
            vec!["backup", "create", "--description", "a\nb", "same"],
            "POST",
            "/v2/share-backups".into(),
            Some(json!({"share_backup": {"share_id": share, "description": "a\nb"}}).to_string()),
        ),
        (
            "a backup renamed with a bell",
            vec!["backup", "set", &full, "--name", "n\u{7}"],
            "PUT",
            backups.clone(),
            Some(json!({"share_backup": {"name": "n\u{7}"}}).to_string()),
        ),
        (
            "the delete of a backup with dependents",
            vec!["backup", "delete", &full],
            "DELETE",
            backups.clone(),
            None,
        ),
    ];
    for (what, args, method, path, body) in cases {
        let cli = p(&args);
        let rest = s.call(method, &path, Some(A), body.as_deref());
        assert!(
            rest_status_for(cli.code).contains(&rest.status),
            "{what}: the CLI exits {} ({}), the API answers {} ({})",
            cli.code,
            cli.stderr.trim(),
            rest.status,
            rest.text
        );
        assert_ne!(cli.code, 0, "{what} was accepted");
    }
}
