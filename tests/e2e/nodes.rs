//! A node's identity: the hostname by default, `STRATA_HOST` or the
//! config's `host` otherwise, so that several nodes can run on one
//! machine. Backups record it as their host.

use std::fs;

use crate::harness::*;

fn host_of(env: &Env, vars: &[(&str, &str)], config: Option<&str>) -> Run {
    let share = env.path("share");
    fs::create_dir_all(&share).expect("share");
    fs::write(share.join("f"), b"data").expect("file");
    let mut args = Vec::new();
    let path;
    if let Some(text) = config {
        path = env.path("node.toml");
        fs::write(&path, text).expect("config");
        args.extend(["--config", path.to_str().expect("utf8")]);
    }
    args.extend([
        "backup",
        "create",
        share.to_str().expect("utf8"),
        "-f",
        "json",
    ]);
    env.strata_with(&args, vars)
}

#[test]
fn a_node_is_named_by_strata_host_then_the_config_then_the_hostname() {
    let env = Env::new();
    let named = host_of(&env, &[("STRATA_HOST", "node-a")], None)
        .ok()
        .json();
    assert_eq!(named["host"], "node-a", "{named}");
    let configured = host_of(&env, &[], Some("host = \"node-b\"\n")).ok().json();
    assert_eq!(configured["host"], "node-b", "{configured}");
    let both = host_of(
        &env,
        &[("STRATA_HOST", "node-c")],
        Some("host = \"node-b\"\n"),
    )
    .ok()
    .json();
    assert_eq!(both["host"], "node-c", "{both}");
    let plain = host_of(&env, &[], None).ok().json();
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    assert_eq!(plain["host"], hostname.as_str(), "{plain}");
    // A name that is not one is refused before anything is done.
    host_of(&env, &[("STRATA_HOST", "bad/name")], None).fails(2, "invalid node identity");
    host_of(&env, &[], Some("host = \"\"\n")).fails(2, "invalid node identity");
    let listed = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    assert_eq!(listed.as_array().map(Vec::len), Some(4));
}
