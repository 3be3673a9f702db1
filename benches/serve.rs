//! `strata serve` under load: requests per second and latency of
//! `GET /v2/share-backups/{id}` (show) and of `/v2/share-backups/detail`
//! paginated by 1,000, with 10,000 backups in the catalog, first idle, then
//! with a backup running (a share of incompressible data at zstd level 19).
//!
//! The 10,000 backups are layers written through the format crate and a
//! catalog rebuilt from them; the server runs in this process on a loopback
//! port, the clients are keep-alive HTTP/1.1 connections on 4 threads.
//!
//! `cargo bench -p strata-benches --bench serve`; under `cargo test` it
//! runs on 500 backups for 1 second a phase as a smoke test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{child, noise};
use strata_engine::repository::layout::{self, LayerName};
use strata_engine::repository::objects::{Cond, ObjectStore};
use strata_engine::repository::objects::{Location, PosixStore};
use strata_engine::{Engine, EngineConfig, Repository};
use strata_format::config::{CompressionSetting, RepoConfig};
use strata_format::layer::{ChunkRef, Entry, EntryKind, LayerMeta, LayerWriter};
use strata_format::pack::{Compression, PackWriter};
use strata_format::{BackupId, ChunkId, FileHash, PackId, RepositoryId, ShareId};
use strata_server::auth::Auth;
use strata_server::ServeConfig;

const TOKEN: &str = "bench:default";

/// `count` full backups of one share, each one file of one shared chunk.
fn synthetic(repo: &Path, count: u32) -> Vec<BackupId> {
    let backend = Arc::new(PosixStore::new(repo).expect("backend"));
    Repository::init(backend.clone(), RepoConfig::new(RepositoryId([9; 16]))).expect("init");
    let content = b"the same 32 bytes in every backup".to_vec();
    let chunk = ChunkId::of(&content);
    let mut w = PackWriter::new(Vec::new()).expect("pack");
    w.add(chunk, &content, content.len() as u32, Compression::None)
        .expect("add");
    let (bytes, _, _) = w.finish().expect("finish");
    let pack = PackId(*blake3::hash(b"serve-bench").as_bytes());
    backend
        .put(&layout::pack(&pack), &bytes, Cond::IfAbsent)
        .expect("pack");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    (0..count)
        .map(|n| {
            let mut w = LayerWriter::new(Vec::new()).expect("layer");
            w.add_entry(&Entry {
                path: b"file".to_vec(),
                mode: 0o100644,
                uid: 0,
                gid: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: 1,
                xattrs: Vec::new(),
                kind: EntryKind::File {
                    size: content.len() as u64,
                    chunks: vec![ChunkRef {
                        id: chunk,
                        len: content.len() as u32,
                    }],
                    hash: FileHash(*blake3::hash(&content).as_bytes()),
                },
            })
            .expect("entry");
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_be_bytes());
            id[4] = 0x5e;
            let id = BackupId(id);
            let time = now - i64::from(count - n) * 60_000_000_000;
            let meta = LayerMeta {
                backup_id: id,
                share_id: ShareId([3; 16]),
                parent_id: None,
                project: "default".into(),
                name: format!("b{n}"),
                description: String::new(),
                share_name: "many".into(),
                share_path: "/many".into(),
                data_timestamp_ns: time,
                created_at_ns: time,
                finished_at_ns: time + 1,
                stats: Default::default(),
                service: Default::default(),
                exclusions: Default::default(),
            };
            let (bytes, _) = w.finish(&meta).expect("finish layer");
            backend
                .put(&LayerName::first(id).key(), &bytes, Cond::IfAbsent)
                .expect("layer");
            id
        })
        .collect()
}

/// A keep-alive HTTP/1.1 connection.
struct Conn {
    stream: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            stream: BufReader::new(s),
            addr,
        }
    }

    /// GETs `path`; returns the status and the body's length.
    fn get(&mut self, path: &str) -> (u16, usize) {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nX-Auth-Token: {TOKEN}\r\n\
             X-OpenStack-Manila-API-Version: 2.91\r\nX-OpenStack-Manila-API-Experimental: true\r\n\r\n",
            self.addr
        );
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .expect("send");
        let mut line = String::new();
        self.stream.read_line(&mut line).expect("status");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().expect("length");
                }
            }
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).expect("body");
        (status, len)
    }
}

/// Latencies of a phase, in seconds, and its wall time.
fn summary(what: &str, mut lat: Vec<f64>, wall: f64) -> (f64, f64) {
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)] * 1e3;
    let rate = lat.len() as f64 / wall;
    println!(
        "{what}: {} requests in {wall:.1} s: {rate:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    (rate, p(0.99))
}

/// Four threads GET random backups for `secs`.
fn shows(addr: SocketAddr, ids: &[BackupId], secs: f64) -> Vec<f64> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                scope.spawn(move || {
                    let mut conn = Conn::new(addr);
                    let mut lat = Vec::new();
                    let mut x = 0x9e37_79b9_u64 ^ t;
                    let start = Instant::now();
                    while start.elapsed().as_secs_f64() < secs {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let id = ids[(x % ids.len() as u64) as usize];
                        let t0 = Instant::now();
                        let (status, _) = conn.get(&format!("/v2/share-backups/{id}"));
                        lat.push(t0.elapsed().as_secs_f64());
                        assert_eq!(status, 200);
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client"))
            .collect()
    })
}

/// Every page of `detail?limit=1000`, `rounds` times, on one connection.
fn pages(addr: SocketAddr, count: usize, rounds: usize) -> Vec<f64> {
    let mut conn = Conn::new(addr);
    let mut lat = Vec::new();
    for _ in 0..rounds {
        for offset in (0..count).step_by(1000) {
            let t0 = Instant::now();
            let (status, len) = conn.get(&format!(
                "/v2/share-backups/detail?limit=1000&offset={offset}"
            ));
            lat.push(t0.elapsed().as_secs_f64());
            assert!(status == 200 && len > 1000);
        }
    }
    lat
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (count, secs) = if benching { (10_000, 5.0) } else { (500, 1.0) };
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("repo");
    let ids = synthetic(&repo, count);
    let catalog = work.path().join("catalog.db");
    let path = |p: &Path| p.to_str().expect("utf8").to_string();
    child(&["rebuild", &path(&catalog), &path(&repo)]);

    let mut config = EngineConfig::new(catalog.clone(), Location::Posix(repo.clone()));
    config.compression = Some(CompressionSetting::Zstd { level: 19 });
    let engine = Engine::open(config).expect("engine");
    let share_dir = work.path().join("busy");
    std::fs::create_dir_all(&share_dir).expect("share");
    let mut data = vec![0u8; 64 << 20];
    for i in 0..(if benching { 4 } else { 1 }) {
        noise(&mut data, i);
        std::fs::write(share_dir.join(format!("f{i}")), &data).expect("data");
    }
    let share = engine
        .create_share(&strata_engine::NewShare {
            id: None,
            name: "busy",
            path: &share_dir,
            size_gib: None,
            protocol: "NFS",
        })
        .expect("share");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            workers: 2,
            auth: Auth::NoAuth,
            share_root: None,
            grace: Duration::from_secs(0),
            max_connections: strata_server::MAX_CONNECTIONS,
        };
        strata_server::serve_until(
            engine,
            config,
            |a| {
                let _ = addr_tx.send(a);
            },
            async move {
                let _ = stop_rx.await;
            },
        )
    });
    let addr = addr_rx.recv().expect("listening");
    println!("{count} backups in the catalog; server on {addr}, 2 cores");

    let (show_idle, show_idle_p99) = summary("show, idle", shows(addr, &ids, secs), secs);
    let start = Instant::now();
    let lat = pages(addr, ids.len(), 5);
    let (_, page_idle_p99) = summary(
        "detail pages of 1,000, idle",
        lat,
        start.elapsed().as_secs_f64(),
    );

    // A backup running meanwhile: started over the API, as an operator would.
    let mut conn = TcpStream::connect(addr).expect("connect");
    let body = format!(
        r#"{{"share_backup": {{"share_id": "{}", "name": "busy"}}}}"#,
        share.id
    );
    let req = format!(
        "POST /v2/share-backups HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {TOKEN}\r\n\
         X-OpenStack-Manila-API-Version: 2.91\r\nX-OpenStack-Manila-API-Experimental: true\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).expect("post");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let (show_busy, show_busy_p99) =
        summary("show, a backup running", shows(addr, &ids, secs), secs);
    let start = Instant::now();
    let lat = pages(addr, ids.len(), 5);
    let (_, page_busy_p99) = summary(
        "detail pages of 1,000, a backup running",
        lat,
        start.elapsed().as_secs_f64(),
    );
    println!(
        "targets: show >= 2,000 req/s ({show_idle:.0} idle, {show_busy:.0} busy; p99 \
         {show_idle_p99:.2} / {show_busy_p99:.2} ms); a detail page < 50 ms (p99 \
         {page_idle_p99:.1} idle, {page_busy_p99:.1} ms busy)"
    );
    let _ = stop_tx.send(());
    server.join().expect("server thread").expect("server");
}
