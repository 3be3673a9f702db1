//! `strata serve` tested over HTTP: a server started on a free loopback
//! port, a small HTTP/1.1 client that can also send what no well-behaved
//! client would, and the real `openstack` client (`openstack.rs`).

#![allow(clippy::unwrap_used)]

mod http;
mod openstack;
mod races;
mod same;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// A running `strata serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// `strata GLOBAL serve … EXTRA`.
    pub fn start(env: &Env, global: &[&str], extra: &[&str]) -> Server {
        Self::start_with(env, global, extra, &[])
    }

    /// [`Server::start`] with these environment variables (failpoints).
    pub fn start_with(env: &Env, global: &[&str], extra: &[&str], vars: &[(&str, &str)]) -> Server {
        let root = env.path("share-root");
        std::fs::create_dir_all(&root).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--catalog")
            .arg(env.path("catalog.db"))
            .arg("--repository")
            .arg(env.repo())
            .args(global)
            .args(["serve", "--listen", "127.0.0.1:0", "--share-root"])
            .arg(&root)
            .args(extra)
            .envs(vars.iter().copied())
            .env_remove("STRATA_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("serve exited before listening")
                .unwrap();
            if let Some(a) = line.strip_prefix("listening on http://") {
                break a.to_string();
            }
        };
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    /// Sends `method path` with `token` (none: no token), the microversion
    /// headers of a backup call, and `body`.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Reply {
        let mut headers = vec![
            ("X-OpenStack-Manila-API-Version", "2.91"),
            ("X-OpenStack-Manila-API-Experimental", "true"),
        ];
        if let Some(t) = token {
            headers.push(("X-Auth-Token", t));
        }
        self.raw(method, path, &headers, body.map(str::as_bytes))
    }

    /// One request with exactly these headers.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        // The server may answer (413) before reading a huge body.
        let _ = s.write_all(&bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        Reply::parse(&out)
    }

    /// Polls backup `id` until its status is `want`.
    pub fn wait_backup(&self, token: &str, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.call("GET", &format!("/v2/share-backups/{id}"), Some(token), None);
            let status = r.json["share_backup"]["status"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if status == want {
                return r.json["share_backup"].clone();
            }
            assert!(
                Instant::now() < deadline && !status.starts_with("error"),
                "backup {id} is {status}, waited for {want}: {}",
                r.text
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls share `id` until its status is `want`.
    pub fn wait_share(&self, token: &str, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.call("GET", &format!("/v2/shares/{id}"), Some(token), None);
            let status = r.json["share"]["status"].as_str().unwrap_or("").to_string();
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "share {id} is {status}: {}",
                r.text
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer: status, headers (lower-case names) and body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub json: Value,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text: body,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status, and for an error Manila's fault body.
    pub fn expect(&self, status: u16) -> &Reply {
        assert_eq!(self.status, status, "{}", self.text);
        if status >= 400 {
            let fault = self.json.as_object().and_then(|o| o.values().next());
            let code = fault.and_then(|f| f["code"].as_u64());
            assert_eq!(
                code,
                Some(u64::from(status)),
                "a Manila fault body: {}",
                self.text
            );
            assert!(
                fault.is_some_and(|f| f["message"].is_string()),
                "{}",
                self.text
            );
        }
        self
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A share of `project` at `dir` (made with the CLI), filled with a tree.
pub fn share_with_tree(env: &Env, project: &str, name: &str) -> (String, std::path::PathBuf) {
    let dir = env.path(name);
    build_tree(&dir);
    (register_share(env, project, name, &dir), dir)
}

/// A share of `project` at `dir`, `files` files of 8 MiB of noise each.
pub fn share_of_noise(env: &Env, project: &str, name: &str, files: u64) -> String {
    let dir = env.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..files {
        std::fs::write(dir.join(format!("f{i}")), noise(8 << 20, i)).unwrap();
    }
    register_share(env, project, name, &dir)
}

/// Registers `dir` as share `name` of `project` with the CLI; its id.
fn register_share(env: &Env, project: &str, name: &str, dir: &Path) -> String {
    let path = dir.to_str().unwrap();
    let args = [
        "--project",
        project,
        "share",
        "create",
        "--name",
        name,
        "--path",
        path,
        "--size",
        "1",
        "-f",
        "value",
        "-c",
        "id",
    ];
    env.strata(&args).ok().stdout.trim().to_string()
}

pub fn same_tree(a: &Path, b: &Path) {
    assert_same(&snapshot(a), &snapshot(b));
}
