//! Running the real binary against a private catalog and repository, and
//! building and comparing real directory trees.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

pub struct Env {
    pub dir: tempfile::TempDir,
    /// `--repository`: `<dir>/repo` unless a test points it elsewhere.
    pub repository: String,
    /// Environment variables every run gets (an S3 server's keys).
    pub vars: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts the run exited with `code` and said `text` on stderr.
    pub fn fails(&self, code: i32, text: &str) {
        assert_eq!(self.code, code, "{}", self.stderr);
        assert!(self.stderr.contains(text), "{}", self.stderr);
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let repository = dir.path().join("repo").display().to_string();
        Env {
            dir,
            repository,
            vars: Vec::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// Runs `strata` with this environment's catalog and repository.
    pub fn strata(&self, args: &[&str]) -> Run {
        self.strata_with(args, &[])
    }

    /// [`Env::strata`] with another catalog (another node's, or a fresh one)
    /// on the same repository.
    pub fn strata_at(&self, catalog: &str, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("--catalog")
            .arg(self.path(catalog))
            .arg("--repository")
            .arg(&self.repository)
            .args(args)
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        run(cmd)
    }

    /// Restores `backup` with `catalog` into `target`.
    pub fn restore_at(&self, catalog: &str, backup: &str, target: &Path) -> Run {
        let target = target.to_str().expect("utf8");
        self.strata_at(
            catalog,
            &["backup", "restore", backup, "--target-dir", target],
        )
    }

    /// [`Env::strata`] with these environment variables set.
    pub fn strata_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        cmd.envs(vars.iter().copied());
        run(cmd)
    }

    /// The `strata` command with this environment's catalog and repository,
    /// not yet run (for a test that pipes or signals it).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("--catalog")
            .arg(self.path("catalog.db"))
            .arg("--repository")
            .arg(&self.repository)
            .args(args)
            .env_remove("STRATA_CONFIG")
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

pub fn run(mut cmd: Command) -> Run {
    cmd.env_remove("STRATA_CONFIG");
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run strata");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

pub fn set_mtime(path: &Path, secs: i64, nsec: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nsec as _,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether `test`, which needs root, must skip: loudly when not root, and
/// a failure instead where `STRATA_REQUIRE_ROOT=1` (as in CI).
pub fn skip_without_root(test: &str, why: &str) -> bool {
    if is_root() {
        return false;
    }
    if std::env::var("STRATA_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test} needs root ({why}), and STRATA_REQUIRE_ROOT=1");
    }
    eprintln!("!!!!!!!! SKIPPED {test}: needs root ({why})");
    true
}

/// A tree with every kind of entry a share holds. Returns its root.
pub fn build_tree(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, data).expect("write");
    };
    fs::create_dir_all(root).expect("root");
    w("empty.txt", b"");
    w("hello.txt", b"hello, strata\n");
    w(
        "docs/compressible.txt",
        &b"all work and no play ".repeat(150_000),
    );
    w("data/random.bin", &noise(9 << 20, 1));
    w("data/copy-of-random.bin", &noise(9 << 20, 1));
    w("data/small-random.bin", &noise(70_000, 2));
    w("with space/ünïcödé name.txt", b"names are bytes");
    let odd = root.join(OsStr::from_bytes(b"latin1-caf\xe9.txt"));
    fs::write(&odd, b"not utf-8").expect("odd name");
    fs::create_dir_all(root.join("empty-dir")).expect("empty dir");
    fs::create_dir_all(root.join("a/b/c/d")).expect("deep");
    w("a/b/c/d/deep.txt", b"deep");

    // Sparse: 64 MiB with two written islands.
    let sparse = fs::File::create(root.join("sparse.img")).expect("sparse");
    sparse.set_len(64 << 20).expect("set_len");
    use std::os::unix::fs::FileExt;
    sparse
        .write_all_at(&noise(8192, 3), 20 << 20)
        .expect("island");
    sparse.write_all_at(b"tail", (64 << 20) - 4).expect("tail");
    drop(sparse);

    // Modes.
    w("readonly.txt", b"read only");
    fs::set_permissions(root.join("readonly.txt"), fs::Permissions::from_mode(0o400))
        .expect("chmod");
    w("tool.sh", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("tool.sh"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    w("locked/inside.txt", b"inside a read-only directory");

    // Links.
    std::os::unix::fs::symlink("hello.txt", root.join("link-rel")).expect("symlink");
    std::os::unix::fs::symlink("/etc/hostname", root.join("link-abs")).expect("symlink");
    std::os::unix::fs::symlink("does/not/exist", root.join("link-dangling")).expect("symlink");
    std::os::unix::fs::symlink("a/b", root.join("link-dir")).expect("symlink");
    w("hard/one.txt", b"one inode, three names");
    fs::hard_link(root.join("hard/one.txt"), root.join("hard/two.txt")).expect("link");
    fs::hard_link(root.join("hard/one.txt"), root.join("a/three.txt")).expect("link");

    // xattrs.
    xattr::set(root.join("hello.txt"), "user.origin", b"e2e").expect("xattr");
    xattr::set(root.join("docs"), "user.kind", b"directory").expect("xattr");

    if is_root() {
        std::os::unix::fs::lchown(root.join("hello.txt"), Some(1234), Some(5678)).expect("chown");
        std::os::unix::fs::lchown(root.join("link-rel"), Some(4321), Some(8765)).expect("lchown");
    }

    // Times, with nanoseconds, on files, symlinks and directories (last).
    set_mtime(&root.join("hello.txt"), 1_600_000_000, 123_456_789);
    set_mtime(&root.join("link-rel"), 1_500_000_000, 987_654_321);
    set_mtime(&root.join("empty-dir"), 1_400_000_000, 5);
    set_mtime(&root.join("a/b"), 1_300_000_000, 999_999_999);
    fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o555)).expect("chmod");
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub content: Option<blake3::Hash>,
    pub target: Option<PathBuf>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Other paths sharing this inode (hardlink group), sorted.
    pub links: Vec<PathBuf>,
}

/// Everything about a tree a restore must reproduce, keyed by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(root).expect("prefix").to_path_buf();
            let m = fs::symlink_metadata(&path).expect("lstat");
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                stack.push(path.clone());
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else {
                continue;
            };
            if ft.is_file() && m.nlink() > 1 {
                inodes.entry(m.ino()).or_default().push(rel.clone());
            }
            let mut xattrs = BTreeMap::new();
            for name in xattr::list(&path).expect("xattrs") {
                if let Some(v) = xattr::get(&path, &name).expect("xattr") {
                    xattrs.insert(name.as_bytes().to_vec(), v);
                }
            }
            out.insert(
                rel,
                Node {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime: (m.mtime(), m.mtime_nsec()),
                    size: if ft.is_file() { m.len() } else { 0 },
                    content: ft
                        .is_file()
                        .then(|| blake3::hash(&fs::read(&path).expect("read"))),
                    target: ft
                        .is_symlink()
                        .then(|| fs::read_link(&path).expect("readlink")),
                    xattrs,
                    links: Vec::new(),
                    // (filled below)
                },
            );
        }
    }
    for group in inodes.values() {
        let mut sorted = group.clone();
        sorted.sort();
        for p in group {
            if let Some(node) = out.get_mut(p) {
                node.links = sorted.clone();
            }
        }
    }
    out
}

/// Asserts two snapshots are equal, naming the first difference.
pub fn assert_same(expected: &BTreeMap<PathBuf, Node>, actual: &BTreeMap<PathBuf, Node>) {
    for (path, node) in expected {
        match actual.get(path) {
            None => panic!("{} missing from the restore", path.display()),
            Some(got) => assert_eq!(node, got, "{} differs", path.display()),
        }
    }
    for path in actual.keys() {
        assert!(
            expected.contains_key(path),
            "{} should not exist",
            path.display()
        );
    }
}

/// Bytes actually allocated on disk for a file.
pub fn allocated(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").blocks() * 512
}

/// Backs up `share` and returns `backup show` as JSON.
pub fn backup(env: &Env, share: &Path) -> serde_json::Value {
    let run = env.strata(&[
        "backup",
        "create",
        "-f",
        "json",
        share.to_str().expect("utf8"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
}

/// Makes an incremental backup of `share` and returns it as JSON; it must
/// succeed and be incremental.
pub fn incremental_backup(env: &Env, share: &Path) -> serde_json::Value {
    let share = share.to_str().expect("utf8");
    let b = env
        .strata(&["backup", "create", "--incremental", "-f", "json", share])
        .ok()
        .json();
    assert_eq!(b["is_incremental"], true, "{b}");
    b
}

/// Every regular file below `dir`, sorted.
pub fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Runs `backup restore BACKUP --target-dir TARGET`.
pub fn restore_to(env: &Env, backup: &str, target: &Path) -> Run {
    env.strata(&[
        "backup",
        "restore",
        backup,
        "--target-dir",
        target.to_str().expect("utf8"),
    ])
}

/// Replaces a repository object's bytes, as damage or an attacker would.
pub fn overwrite(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Unmounts a tmpfs when the test ends, however it ends.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).expect("mount");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(ok.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Waits (up to 10 s) for `child` to hold the repository's exclusive lock,
/// lets it run `delay` more, then kills it with SIGKILL; returns whether it
/// was still running when killed.
pub fn kill_after_exclusive_lock(
    env: &Env,
    child: &mut std::process::Child,
    delay: std::time::Duration,
) -> bool {
    let lock = env.repo().join("locks").join("exclusive");
    let started = std::time::Instant::now();
    while !lock.exists()
        && child.try_wait().expect("try_wait").is_none()
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(delay);
    let running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}
