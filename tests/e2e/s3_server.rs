//! Private S3 servers for one test, on free loopback ports, killed by PID
//! when dropped: `s3s-fs` (objects in a directory of the test's; it refuses
//! a put under a failing `If-None-Match` or `If-Match`, but lets racing
//! ones through and ignores `If-Match` on deletes) and moto (in memory,
//! served one request at a time, so its conditions hold, on deletes too).
//! Each accepts things the other refuses.
//!
//! `tests/run` installs both under `target/`. Without them the S3 tests
//! skip with a loud message, unless `STRATA_REQUIRE_S3=1` (set by CI),
//! which makes them fail instead.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_engine::repository::objects::s3::{Credentials, S3Url};

/// The keys the servers are started with.
pub const ACCESS_KEY: &str = "strata-test";
pub const SECRET_KEY: &str = "strata-test-secret";
pub const BUCKET: &str = "strata-test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    S3sFs,
    Moto,
}

impl Kind {
    fn binary(self) -> Option<PathBuf> {
        let (var, under_target, name) = match self {
            Kind::S3sFs => ("STRATA_S3S_FS", "tools/bin/s3s-fs", "s3s-fs"),
            Kind::Moto => (
                "STRATA_MOTO_SERVER",
                "moto-venv/bin/moto_server",
                "moto_server",
            ),
        };
        if let Some(p) = std::env::var_os(var) {
            return Some(PathBuf::from(p));
        }
        let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::iter::once(target.join(under_target))
            .chain(std::env::split_paths(&path).map(|d| d.join(name)))
            .find(|p| p.is_file())
    }
}

/// moto's server, one request at a time (its launcher's own code, with
/// `threaded=False`; HTTP/1.0, so no idle connection holds it).
const MOTO_SERIAL: &str = "import os, sys
port = int(sys.argv[1])
os.environ['MOTO_PORT'] = str(port)
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
run_simple('127.0.0.1', port, DomainDispatcherApplication(create_backend_app), threaded=False)
";

/// The Python of the environment `binary` was installed into.
fn python_beside(binary: &std::path::Path) -> PathBuf {
    let python = binary.with_file_name("python3");
    match python.is_file() {
        true => python,
        false => PathBuf::from("python3"),
    }
}

pub struct S3Server {
    pub port: u16,
    /// s3s-fs's objects (the bucket is a directory in it).
    _root: tempfile::TempDir,
    child: Child,
}

/// Skips `test` loudly (`None`), or panics where the S3 tests must run.
fn skip(test: &str, why: &str) -> Option<S3Server> {
    if std::env::var("STRATA_REQUIRE_S3").as_deref() == Ok("1") {
        panic!("{test}: S3 tests are required here, but {why}")
    }
    eprintln!("\n!!!!!!!! SKIPPED {test}: {why} !!!!!!!!\n");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl S3Server {
    /// Starts a server of `kind` with an empty bucket [`BUCKET`], or
    /// `None` when the S3 tests skip here.
    pub fn start(test: &str, kind: Kind) -> Option<S3Server> {
        let Some(binary) = kind.binary() else {
            return skip(
                test,
                &format!("{kind:?} is not installed (run the tests through tests/run)"),
            );
        };
        let root = tempfile::tempdir().expect("server root");
        let port = free_port();
        let mut cmd = Command::new(&binary);
        match kind {
            Kind::S3sFs => {
                std::fs::create_dir(root.path().join(BUCKET)).expect("bucket dir");
                cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                    .arg(root.path());
            }
            Kind::Moto => {
                // moto's own launcher serves requests on threads and
                // checks a condition, then writes: racing conditional
                // creates may all succeed. Served one request at a time,
                // it holds conditions as S3 does.
                cmd = Command::new(python_beside(&binary));
                cmd.args(["-c", MOTO_SERIAL, &port.to_string()]);
            }
        }
        let log = std::fs::File::create(root.path().join("server.log")).expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let server = S3Server {
            port,
            _root: root,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{kind:?} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        if kind == Kind::Moto {
            server.create_bucket_with_boto(&binary);
        }
        Some(server)
    }

    /// moto keeps buckets in memory: one is made through boto3, which
    /// comes with it.
    fn create_bucket_with_boto(&self, moto: &std::path::Path) {
        let python = python_beside(moto);
        let script = format!(
            "import boto3; boto3.client('s3', endpoint_url='{}', aws_access_key_id='{ACCESS_KEY}', \
             aws_secret_access_key='{SECRET_KEY}', region_name='us-east-1').create_bucket(Bucket='{BUCKET}')",
            self.endpoint()
        );
        let status = Command::new(python)
            .args(["-c", &script])
            .status()
            .expect("python3");
        assert!(status.success(), "the bucket could not be made on moto");
    }

    /// The server's process (the benchmark counts its CPU time).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The location of a repository under `prefix` in the bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "s3://{BUCKET}/{prefix}?endpoint={}&region=us-east-1",
            self.endpoint()
        )
    }

    /// [`S3Server::url`] parsed, with the server's keys.
    pub fn parsed(&self, prefix: &str) -> S3Url {
        let mut url = S3Url::parse(&self.url(prefix)).expect("url");
        url.credentials = Some(Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
            session_token: None,
        });
        url
    }

    /// The environment a strata process reaches the server with.
    pub fn env(&self) -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
