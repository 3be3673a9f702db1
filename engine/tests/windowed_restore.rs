//! A restore in windows of the tree: with a window of one entry, every
//! directory, link and file is restored across window boundaries, and the
//! result is the same tree as a restore in one window — contents, modes,
//! mtimes (directories included), symlinks and hardlink groups.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use strata_engine::repository::objects::Location;
use strata_engine::{CreateBackup, Engine, EngineConfig, Progress, RestoreRequest, RestoreTarget};

fn engine(dir: &Path, window: usize) -> Engine {
    let mut config = EngineConfig::new(dir.join("catalog.db"), Location::Posix(dir.join("repo")));
    config.restore_window_bytes = window;
    Engine::open(config).unwrap()
}

fn set_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 7,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Nested directories with files, hardlinks whose names sit in other
/// directories (one of them read-only), symlinks, and directory mtimes.
fn build(root: &Path) {
    for d in 0..6 {
        for s in 0..3 {
            let dir = root.join(format!("d{d}/s{s}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..4 {
                let body = format!("{d}/{s}/{f} ").repeat(1 + d * 50 + f * 700);
                fs::write(dir.join(format!("f{f}.txt")), body).unwrap();
            }
        }
    }
    fs::write(root.join("d0/big.bin"), vec![3u8; 9 << 20]).unwrap();
    fs::hard_link(root.join("d0/s0/f0.txt"), root.join("d3/s1/link.txt")).unwrap();
    fs::hard_link(root.join("d0/s0/f0.txt"), root.join("d5/link.txt")).unwrap();
    fs::create_dir(root.join("d4/ro")).unwrap();
    fs::hard_link(root.join("d1/s2/f3.txt"), root.join("d4/ro/link.txt")).unwrap();
    std::os::unix::fs::symlink("../d0/s0", root.join("d2/to-s0")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("d5/dangling")).unwrap();
    fs::set_permissions(root.join("d4/ro"), fs::Permissions::from_mode(0o555)).unwrap();
    for (i, d) in ["d0", "d0/s1", "d3/s1", "d4/ro", "d5", "d4"]
        .iter()
        .enumerate()
    {
        set_mtime(&root.join(d), 1_500_000_000 + i as i64 * 1000);
    }
}

#[derive(Debug, PartialEq)]
struct Node {
    mode: u32,
    mtime: (i64, i64),
    content: Option<Vec<u8>>,
    target: Option<PathBuf>,
    /// The first path (in sorted order) of its hardlink group.
    group: Option<PathBuf>,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut all = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            all.push(p);
        }
    }
    all.sort();
    for p in all {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let group = (m.is_file() && m.nlink() > 1)
            .then(|| inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone());
        out.insert(
            rel,
            Node {
                mode: m.mode(),
                mtime: (m.mtime(), m.mtime_nsec()),
                content: m.is_file().then(|| fs::read(&p).unwrap()),
                target: m.is_symlink().then(|| fs::read_link(&p).unwrap()),
                group,
            },
        );
    }
    out
}

#[test]
fn a_restore_one_entry_at_a_time_equals_one_in_a_single_window() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    build(&share);
    let expected = snapshot(&share);
    let whole = engine(dir.path(), usize::MAX);
    let (s, _) = whole
        .share_for_backup(share.to_str().unwrap(), false)
        .unwrap();
    let backup = whole
        .create_backup(&s, &CreateBackup::default(), &Progress::default())
        .unwrap()
        .backup;
    drop(whole);
    for (window, name) in [(1, "one-entry"), (usize::MAX, "single")] {
        let engine = engine(dir.path(), window);
        let target = dir.path().join(name);
        let req = RestoreRequest::whole(RestoreTarget::Dir(target.clone()));
        let done = engine
            .restore_backup(&backup, &req, &Progress::default())
            .unwrap();
        let entries = expected.len() as u64;
        match window {
            1 => assert_eq!(done.windows, entries, "{done:?}"),
            _ => assert_eq!(done.windows, 1, "{done:?}"),
        }
        assert_eq!(
            snapshot(&target),
            expected,
            "restored in windows of {window} bytes"
        );
    }
}
