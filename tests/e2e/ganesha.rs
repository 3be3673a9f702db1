//! A private nfs-ganesha server for one test: NFSv4.1 on a free loopback
//! port, exporting a directory of the test's, killed by PID when dropped;
//! or NFSv3 and v4 where rpcbind runs (in a private network namespace, see
//! `nfs_v3.rs`).
//!
//! The server needs `ganesha.nfsd` and root. Without them the NFS tests
//! skip with a loud message, unless `STRATA_REQUIRE_NFS=1` (set by CI),
//! which makes them fail instead.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Ganesha {
    pub export: PathBuf,
    run: tempfile::TempDir,
    pub port: u16,
    /// Serves NFSv3 too (registered with the rpcbind of this namespace).
    v3: bool,
    child: Option<Child>,
}

fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("ganesha.nfsd"))
        .find(|p| p.is_file())
}

/// Whether NFS tests can run here; panics if they must and cannot.
pub fn available(test: &str) -> bool {
    let why = if binary().is_none() {
        Some("ganesha.nfsd is not installed (run the tests through tests/run as root)")
    } else if !rustix::process::geteuid().is_root() {
        Some("the NFS server needs root")
    } else {
        None
    };
    why.is_none_or(|why| skip(test, why))
}

/// Skips `test` with a loud message (returns `false`), or panics when the
/// NFS tests must run (`STRATA_REQUIRE_NFS=1`).
pub fn skip(test: &str, why: &str) -> bool {
    if std::env::var("STRATA_REQUIRE_NFS").as_deref() == Ok("1") {
        panic!("{test}: NFS tests are required here, but {why}")
    }
    eprintln!("\n!!!!!!!! SKIPPED {test}: {why} !!!!!!!!\n");
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Ganesha {
    /// Starts a server exporting `export` (created if missing) as
    /// `/export`, or `None` when the NFS tests skip here.
    pub fn start(test: &str, export: &Path) -> Option<Ganesha> {
        Self::start_serving(test, export, false)
    }

    /// Like [`Ganesha::start`], serving NFSv3 as well: needs rpcbind
    /// running in this network namespace.
    #[allow(dead_code)]
    pub fn start_with_v3(test: &str, export: &Path) -> Option<Ganesha> {
        Self::start_serving(test, export, true)
    }

    fn start_serving(test: &str, export: &Path, v3: bool) -> Option<Ganesha> {
        if !available(test) {
            return None;
        }
        std::fs::create_dir_all(export).expect("export dir");
        let run = tempfile::tempdir().expect("run dir");
        let mut g = Ganesha {
            export: export.to_path_buf(),
            run,
            port: free_port(),
            v3,
            child: None,
        };
        g.write_config();
        g.restart();
        Some(g)
    }

    fn write_config(&self) {
        let recovery = self.run.path().join("recovery");
        std::fs::create_dir_all(&recovery).expect("recovery dir");
        let config = format!(
            r#"NFS_CORE_PARAM {{
    {bind}
    NFS_Port = {port};
    Protocols = {protocols};
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
    MaxRPCRecvBufferSize = 4194304;
    MaxRPCSendBufferSize = 4194304;
}}
NFSV4 {{
    Graceless = true;
    Lease_Lifetime = 10;
    RecoveryBackend = fs;
    RecoveryRoot = {recovery};
}}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT {{
    Export_Id = 1;
    Path = {export};
    Pseudo = /export;
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    Protocols = {protocols};
    Transports = TCP;
    FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"#,
            port = self.port,
            protocols = if self.v3 { "3, 4" } else { "4" },
            // With v3, the server runs in a private network namespace,
            // where loopback is all there is (and where resolving an
            // address for `Bind_addr` fails).
            bind = if self.v3 {
                ""
            } else {
                "Bind_addr = 127.0.0.1;"
            },
            recovery = recovery.display(),
            export = self.export.display(),
        );
        std::fs::write(self.run.path().join("ganesha.conf"), config).expect("config");
    }

    /// The repository URL for `path` below the export.
    pub fn url(&self, path: &str) -> String {
        format!("nfs://127.0.0.1:{}/export/{path}?version=4.1", self.port)
    }

    /// The NFSv3 URL for `path` below the export: v3 names the export by
    /// its real path, and finds the server's ports through rpcbind.
    #[allow(dead_code)]
    pub fn url_v3(&self, path: &str) -> String {
        format!("nfs://127.0.0.1{}/{path}?version=3", self.export.display())
    }

    /// The server's process id, while it runs (the NFS benchmark reads
    /// the CPU time it uses).
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and waits until it serves.
    pub fn restart(&mut self) {
        self.kill();
        let dir = self.run.path();
        let log = dir.join("ganesha.log");
        let _ = std::fs::remove_file(&log);
        let child = Command::new(binary().expect("ganesha.nfsd"))
            .arg("-F")
            .arg("-f")
            .arg(dir.join("ganesha.conf"))
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(dir.join("ganesha.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ganesha.nfsd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            if log_text.contains("NFS SERVER INITIALIZED")
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("ganesha.nfsd exited ({status}) at start:\n{log_text}");
            }
            assert!(
                Instant::now() < deadline,
                "ganesha did not start:\n{log_text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        self.kill();
    }
}
