//! `strata mount`: the project's backups as a read-only FUSE file system,
//! `/<share>/<backup>/…`, a backup named by its name (when unique in its
//! share) or its creation time. A backup's tree is loaded when it is first
//! entered (a few backups are held at once); file contents are read lazily
//! through the same verified chunk path as a restore, with a bounded cache
//! of decoded chunks. Hardlinks share an inode.

mod tree;

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyXattr, Request,
};
use strata_engine::store::{BackupFilter, BackupRecord, BackupStatus};
use strata_engine::{Engine, Error, OpenTree, Result};
use strata_format::layer::{Entry, EntryKind};
use strata_format::BackupId;

use tree::{ChunkCache, Tree, ROOT};

/// Backups whose trees are held at once.
const HELD_TREES: usize = 4;
/// Decoded chunk bytes cached.
const CACHE_BYTES: usize = 64 << 20;
/// How long the kernel may trust what it was told: a backup never changes.
const TTL: Duration = Duration::from_secs(60);

/// What an inode below `2^32` is: the root, a share or a backup.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Node {
    Root,
    Share(strata_format::ShareId),
    Backup(BackupId),
}

/// An inode: a node of the table, or entry `idx` of the backup whose node
/// is `backup` (`((backup + 1) << 32) | idx`).
enum Ino {
    Node(u64),
    Entry { backup: u64, idx: u32 },
}

fn decode(ino: u64) -> Ino {
    match ino >> 32 {
        0 => Ino::Node(ino),
        b => Ino::Entry {
            backup: b - 1,
            idx: (ino & 0xffff_ffff) as u32,
        },
    }
}

fn entry_ino(backup: u64, idx: u32) -> u64 {
    ((backup + 1) << 32) | u64::from(idx)
}

pub struct BackupFs {
    engine: Arc<Engine>,
    state: Mutex<State>,
}

struct State {
    /// Inode `i` is `nodes[i - 1]`.
    nodes: Vec<Node>,
    known: HashMap<Node, u64>,
    trees: HashMap<BackupId, Arc<Tree>>,
    loaded: VecDeque<BackupId>,
    cache: ChunkCache,
}

impl State {
    fn ino(&mut self, node: Node) -> u64 {
        if let Some(&ino) = self.known.get(&node) {
            return ino;
        }
        self.nodes.push(node.clone());
        let ino = self.nodes.len() as u64;
        self.known.insert(node, ino);
        ino
    }
}

impl BackupFs {
    pub fn new(engine: Arc<Engine>) -> BackupFs {
        let mut state = State {
            nodes: Vec::new(),
            known: HashMap::new(),
            trees: HashMap::new(),
            loaded: VecDeque::new(),
            cache: ChunkCache::new(CACHE_BYTES),
        };
        state.ino(Node::Root);
        BackupFs {
            engine,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The available backups of a share, each with the name it has here.
    fn backups_of(&self, share: strata_format::ShareId) -> Result<Vec<(String, BackupRecord)>> {
        let backups = self.engine.store().list_backups(&BackupFilter {
            share_id: Some(share),
            status: Some(BackupStatus::Available),
            ..Default::default()
        })?;
        let named = |b: &BackupRecord| -> Option<String> {
            b.name.clone().filter(|n| {
                !n.is_empty()
                    && !n.contains('/')
                    && backups
                        .iter()
                        .filter(|o| o.name.as_ref() == Some(n))
                        .count()
                        == 1
            })
        };
        Ok(backups
            .iter()
            .map(|b| {
                let name = match named(b) {
                    Some(n) => n,
                    None => strata_engine::clock::iso8601(b.created_at),
                };
                (name, b.clone())
            })
            .collect())
    }

    /// The shares of the project that the root lists.
    fn shares(&self) -> Result<Vec<strata_engine::store::Share>> {
        let project = self.engine.project();
        Ok(self
            .engine
            .store()
            .list_shares(Some(project))?
            .into_iter()
            .filter(|s| !s.name.contains('/') && !s.name.is_empty())
            .collect())
    }

    /// The tree of the backup whose node is `node`, loaded if need be.
    fn tree(&self, state: &mut State, node: u64) -> Result<Arc<Tree>> {
        let Some(Node::Backup(id)) = state.nodes.get(node as usize - 1).cloned() else {
            return Err(Error::NotFound {
                kind: "inode",
                name: node.to_string(),
            });
        };
        if let Some(t) = state.trees.get(&id) {
            return Ok(Arc::clone(t));
        }
        let record = self.engine.store().backup(id)?;
        let tree = Arc::new(Tree::load(OpenTree::open(
            Arc::clone(&self.engine),
            &record,
        )?)?);
        state.trees.insert(id, Arc::clone(&tree));
        state.loaded.push_back(id);
        while state.loaded.len() > HELD_TREES {
            if let Some(old) = state.loaded.pop_front() {
                state.trees.remove(&old);
            }
        }
        Ok(tree)
    }

    fn attr_of(&self, state: &mut State, ino: u64) -> Result<FileAttr> {
        match decode(ino) {
            Ino::Node(n) => {
                let created = match state.nodes.get(n as usize - 1) {
                    Some(Node::Backup(id)) => self.engine.store().backup(*id)?.created_at,
                    Some(_) => 0,
                    None => return Err(gone(ino)),
                };
                Ok(dir_attr(ino, created))
            }
            Ino::Entry { backup, idx } => {
                let tree = self.tree(state, backup)?;
                let at = tree.content[idx as usize];
                Ok(entry_attr(&tree, entry_ino(backup, at), at))
            }
        }
    }

    fn lookup_in(&self, state: &mut State, parent: u64, name: &[u8]) -> Result<FileAttr> {
        let text = String::from_utf8_lossy(name);
        let child = match decode(parent) {
            Ino::Node(n) => match state.nodes.get(n as usize - 1).cloned() {
                Some(Node::Root) => {
                    let share = self
                        .shares()?
                        .into_iter()
                        .find(|s| s.name.as_bytes() == name);
                    share.map(|s| state.ino(Node::Share(s.id)))
                }
                Some(Node::Share(share)) => {
                    let backups = self.backups_of(share)?;
                    let found = backups
                        .into_iter()
                        .find(|(n, b)| n.as_bytes() == name || b.id.to_string() == text);
                    found.map(|(_, b)| state.ino(Node::Backup(b.id)))
                }
                Some(Node::Backup(_)) => {
                    let tree = self.tree(state, n)?;
                    tree.child(ROOT, name)
                        .map(|i| entry_ino(n, tree.content[i as usize]))
                }
                None => None,
            },
            Ino::Entry { backup, idx } => {
                let tree = self.tree(state, backup)?;
                tree.child(idx, name)
                    .map(|i| entry_ino(backup, tree.content[i as usize]))
            }
        };
        match child {
            Some(ino) => self.attr_of(state, ino),
            None => Err(Error::NotFound {
                kind: "path",
                name: text.into_owned(),
            }),
        }
    }

    /// Every entry of directory `ino`: (inode, kind, name).
    fn list(&self, state: &mut State, ino: u64) -> Result<Vec<(u64, FileType, Vec<u8>)>> {
        let kids = |tree: Arc<Tree>, backup: u64, dir: u32| {
            tree.kids_of(dir)
                .iter()
                .map(|&k| {
                    let at = tree.content[k as usize];
                    let kind = file_type(&tree.entries[at as usize]);
                    (entry_ino(backup, at), kind, tree.name(k).to_vec())
                })
                .collect::<Vec<_>>()
        };
        Ok(match decode(ino) {
            Ino::Node(n) => match state.nodes.get(n as usize - 1).cloned() {
                Some(Node::Root) => self
                    .shares()?
                    .into_iter()
                    .map(|s| {
                        (
                            state.ino(Node::Share(s.id)),
                            FileType::Directory,
                            s.name.into_bytes(),
                        )
                    })
                    .collect(),
                Some(Node::Share(share)) => self
                    .backups_of(share)?
                    .into_iter()
                    .map(|(name, b)| {
                        (
                            state.ino(Node::Backup(b.id)),
                            FileType::Directory,
                            name.into_bytes(),
                        )
                    })
                    .collect(),
                Some(Node::Backup(_)) => kids(self.tree(state, n)?, n, ROOT),
                None => return Err(gone(ino)),
            },
            Ino::Entry { backup, idx } => kids(self.tree(state, backup)?, backup, idx),
        })
    }

    /// The entry of inode `ino` and its tree.
    fn entry(&self, state: &mut State, ino: u64) -> Result<(Arc<Tree>, u32)> {
        match decode(ino) {
            Ino::Entry { backup, idx } => Ok((self.tree(state, backup)?, idx)),
            Ino::Node(_) => Err(Error::InvalidArgument("a directory".into())),
        }
    }
}

fn gone(ino: u64) -> Error {
    Error::NotFound {
        kind: "inode",
        name: ino.to_string(),
    }
}

fn errno(e: &Error) -> Errno {
    match e {
        Error::NotFound { .. } => Errno::ENOENT,
        Error::InvalidArgument(_) => Errno::EINVAL,
        _ => {
            eprintln!("strata mount: {e}");
            Errno::EIO
        }
    }
}

fn time(ns: i64) -> SystemTime {
    match u64::try_from(ns) {
        Ok(ns) => UNIX_EPOCH + Duration::from_nanos(ns),
        Err(_) => UNIX_EPOCH,
    }
}

fn file_type(e: &Entry) -> FileType {
    match e.kind {
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink { .. } => FileType::Symlink,
        EntryKind::File { .. } | EntryKind::Hardlink { .. } => FileType::RegularFile,
    }
}

fn dir_attr(ino: u64, created_ns: i64) -> FileAttr {
    let t = time(created_ns);
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: FileType::Directory,
        perm: 0o555,
        nlink: 2,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn entry_attr(tree: &Tree, ino: u64, at: u32) -> FileAttr {
    let e = &tree.entries[at as usize];
    let size = match &e.kind {
        EntryKind::File { size, .. } => *size,
        EntryKind::Symlink { target } => target.len() as u64,
        _ => 0,
    };
    let t = time(e.mtime_ns);
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: time(e.ctime_ns),
        crtime: t,
        kind: file_type(e),
        perm: (e.mode & 0o7777) as u16,
        nlink: tree.nlink[at as usize],
        uid: e.uid,
        gid: e.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Answers an xattr request of `size` with `data` (its size when 0).
fn xattr_reply(reply: ReplyXattr, size: u32, data: &[u8]) {
    match size {
        0 => reply.size(data.len() as u32),
        s if (s as usize) < data.len() => reply.error(Errno::ERANGE),
        _ => reply.data(data),
    }
}

impl Filesystem for BackupFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.lock();
        match self.lookup_in(&mut state, parent.0, name.as_bytes()) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut state = self.lock();
        match self.attr_of(&mut state, ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let mut state = self.lock();
        match self.entry(&mut state, ino.0) {
            Ok((tree, i)) => match &tree.entries[i as usize].kind {
                EntryKind::Symlink { target } => reply.data(target),
                _ => reply.error(Errno::EINVAL),
            },
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut state = self.lock();
        let read = self.entry(&mut state, ino.0).and_then(|(tree, i)| {
            let e = &tree.entries[i as usize];
            state.cache.read(&tree.open, e, offset, size as usize)
        });
        match read {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut state = self.lock();
        let listed = match self.list(&mut state, ino.0) {
            Ok(listed) => listed,
            Err(e) => return reply.error(errno(&e)),
        };
        let dots = [
            (ino.0, FileType::Directory, b".".to_vec()),
            (ino.0, FileType::Directory, b"..".to_vec()),
        ];
        for (i, (child, kind, name)) in dots
            .into_iter()
            .chain(listed)
            .enumerate()
            .skip(offset as usize)
        {
            if reply.add(INodeNo(child), i as u64 + 1, kind, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let mut state = self.lock();
        match self.entry(&mut state, ino.0) {
            Ok((tree, i)) => {
                let e = &tree.entries[i as usize];
                match e.xattrs.iter().find(|x| x.name == name.as_bytes()) {
                    Some(x) => xattr_reply(reply, size, &x.value),
                    None => reply.error(Errno::NO_XATTR),
                }
            }
            Err(_) => reply.error(Errno::NO_XATTR),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut state = self.lock();
        let names = match self.entry(&mut state, ino.0) {
            Ok((tree, i)) => tree.entries[i as usize]
                .xattrs
                .iter()
                .flat_map(|x| x.name.iter().copied().chain([0]))
                .collect(),
            Err(_) => Vec::new(),
        };
        xattr_reply(reply, size, &names);
    }
}

/// Mounts the backups at `mountpoint`, read-only, until it is unmounted or
/// the process is told to stop (SIGINT, SIGTERM); then unmounts.
pub fn run(engine: Engine, mountpoint: &Path) -> anyhow::Result<()> {
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::Unsupported(
            "/dev/fuse is missing: this kernel or container offers no FUSE, so nothing can be mounted".into(),
        )
        .into());
    }
    if !mountpoint.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "mount point {} is not a directory",
            mountpoint.display()
        ))
        .into());
    }
    let fs = BackupFs::new(Arc::new(engine));
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("strata".into()),
        fuser::MountOption::Subtype("strata".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    let session = fuser::spawn_mount(fs, mountpoint, &config)
        .map_err(|e| Error::io(mountpoint.to_path_buf(), e))?;
    eprintln!(
        "mounted at {}; unmount it (umount) or press Ctrl-C to end",
        mountpoint.display()
    );
    wait_for_end(&session)?;
    if session.guard.is_finished() {
        return Ok(());
    }
    session
        .umount_and_join()
        .map_err(|e| Error::io(mountpoint.to_path_buf(), e))?;
    Ok(())
}

/// Waits for a stop signal, or for the session to end by itself (an
/// unmount from outside).
fn wait_for_end(session: &fuser::BackgroundSession) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        while !session.guard.is_finished() {
            tokio::select! {
                _ = int.recv() => break,
                _ = term.recv() => break,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        Ok::<(), std::io::Error>(())
    })?;
    Ok(())
}
