//! Command-line arguments, modelled on `openstack share backup …`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "Incremental chunked backups of file shares into a content-addressed repository",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 backup done but some paths skipped, \
                  4 not found, 5 busy or invalid state, 6 quota, 7 corruption, 8 I/O or no space, \
                  9 cancelled, 10 not permitted (another project's share)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// TOML config file (default: none; embedded defaults apply).
    #[arg(long, global = true, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Catalog database (SQLite, on local disk).
    #[arg(long, global = true, env = "STRATA_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// Repository: a directory (a mounted NFS export is one) or an export
    /// reached directly, `nfs://HOST/EXPORT/PATH?version=3|4.1`.
    #[arg(long, global = true, env = "STRATA_REPOSITORY")]
    pub repository: Option<String>,
    /// Project the command acts in.
    #[arg(long, global = true)]
    pub project: Option<String>,
    /// Output format.
    #[arg(short = 'f', long = "format", global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Show only this column (repeatable).
    #[arg(short = 'c', long = "column", global = true)]
    pub columns: Vec<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Value,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage shares (the directory trees that get backed up).
    #[command(subcommand)]
    Share(ShareCommand),
    /// Create, list, restore and delete backups.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Show and set per-project quotas.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// The catalog itself.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Check that the catalog and the repository agree (reads no pack
    /// data), and with --read-data that every chunk is intact.
    Check {
        /// Also read every pack and check every chunk against its id.
        #[arg(long)]
        read_data: bool,
        /// Read only this part of the packs: a percentage (10%) or a slice
        /// (3/7: the slices 1/7 … 7/7 read every pack exactly once).
        #[arg(long, value_name = "SUBSET")]
        read_data_subset: Option<String>,
    },
    /// Measure what bounds a backup of a share to the repository (share
    /// walk and read, export writes and small operations, CPU), and
    /// estimate the time of a full and of an incremental backup. Writes
    /// only under a temporary prefix in the repository, and removes it.
    Bench(BenchArgs),
    /// Mount the project's backups read-only with FUSE at MOUNTPOINT:
    /// `/<share>/<backup name or creation time>/…`, file contents read on
    /// demand and verified. Runs until unmounted or interrupted (Ctrl-C).
    Mount { mountpoint: PathBuf },
    /// Serve the Manila share-backup REST API (what `openstack share backup
    /// …` drives) until SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Rewrite packs whose unused share is above a threshold: their live
    /// chunks are copied into new packs, then the old packs are removed
    /// (waits for running backups and restores to finish).
    Repack {
        /// Repack a pack when more than this share of its bytes is unused.
        #[arg(long, default_value = "20%")]
        max_unused: String,
        /// Say what would be repacked; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Seconds to wait for running backups and restores.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Clean up after operations whose process died, and remove packs
    /// nothing references (waits for running backups to finish); with
    /// `repack_max_unused_percent` in the config, also repack.
    Cleanup {
        /// Seconds to wait for running backups before skipping pack removal.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The share (a directory) to measure.
    #[arg(long)]
    pub share: PathBuf,
    /// Read at most this many MiB of the share.
    #[arg(long, default_value_t = 512)]
    pub read_mib: u64,
    /// Write this many MiB to the repository, in pack-sized objects.
    #[arg(long, default_value_t = 512)]
    pub write_mib: u64,
    /// Fraction of the share a typical incremental backup reads.
    #[arg(long, default_value_t = 0.05)]
    pub change_rate: f64,
}

#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Rebuild a missing or empty catalog from the repository alone: the
    /// chunk index from pack trailers, shares and backups from layers.
    /// Exit 7 when a pack or layer was damaged (named in the report).
    Rebuild {
        /// Replace a catalog that is not empty.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// Limits and usage of the project.
    Show,
    /// Set the project's limits (-1: unlimited).
    Set {
        #[arg(long, allow_negative_numbers = true)]
        backups: Option<i64>,
        #[arg(long, allow_negative_numbers = true)]
        backup_gigabytes: Option<i64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Take a read-only snapshot of a share that is a btrfs subvolume, or
    /// register one its storage made (`--path`).
    Create {
        share: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// A snapshot the storage already made (NetApp `.snapshot/NAME`,
        /// ZFS `.zfs/snapshot/NAME`, an LVM mount): registered, never
        /// touched.
        #[arg(long)]
        path: Option<PathBuf>,
        /// When a registered snapshot was made (RFC 3339, e.g.
        /// 2026-12-02T08:00:00Z); by default its directory's change time.
        #[arg(long, requires = "path")]
        created_at: Option<String>,
    },
    /// List snapshots.
    List {
        #[arg(long)]
        share: Option<String>,
    },
    /// Show one snapshot.
    Show { snapshot: String },
    /// Delete snapshots (a registered snapshot's data is never touched).
    Delete {
        #[arg(required = true)]
        snapshots: Vec<String>,
    },
}

/// What a backup leaves out, besides the share's configured exclusions.
#[derive(Args, Debug, Default, Clone)]
pub struct ExcludeArgs {
    /// Leave out paths matching this glob, with their subtrees; repeatable.
    /// A glob without a `/` matches a name at any depth (`*.tmp`), one
    /// with a `/` the path from the share's root (`home/*/cache`).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read globs to leave out from FILE, one a line (blank lines and
    /// lines starting with `#` are ignored); repeatable.
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Leave out the contents of directories tagged as caches (a
    /// CACHEDIR.TAG file with the cache directory signature).
    #[arg(long)]
    pub exclude_caches: bool,
    /// Leave out the contents of directories that hold a file of this
    /// name; repeatable.
    #[arg(long, value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ShareCommand {
    /// Register a directory as a share.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        path: PathBuf,
        /// Size in GiB (checked by restores into the share; from a backup,
        /// the backup's size by default).
        #[arg(long)]
        size: Option<u64>,
        #[arg(long, default_value = "NFS")]
        protocol: String,
        /// Create the share from this backup (id or name): the directory
        /// must be missing or empty, and the backup is restored into it.
        #[arg(long)]
        backup_id: Option<String>,
    },
    /// List shares.
    List {
        #[arg(long)]
        all_projects: bool,
    },
    /// Point-in-time snapshots of shares.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Show one share.
    Show { share: String },
    /// Set a share's status (`in-use` marks it busy for everything but
    /// `backup create --force`; any status resets it, as an administrator),
    /// or its path (which confirms the path of a share a catalog rebuild or
    /// an import recorded).
    Set {
        share: String,
        #[arg(long, required_unless_present = "path")]
        status: Option<String>,
        #[arg(long)]
        path: Option<std::path::PathBuf>,
    },
    /// Delete a share's record (never its data).
    Delete { shares: Vec<String> },
}

#[derive(Subcommand, Debug)]
pub enum TypeCommand {
    /// List the enabled backup types.
    List,
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Back up a share (id, name, or a directory, which is registered if new).
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Record only what changed since the share's latest available backup.
        #[arg(long)]
        incremental: bool,
        /// Build the incremental on this backup (id or name) instead.
        #[arg(long, requires = "incremental")]
        parent: Option<String>,
        /// Read and hash every file instead of trusting unchanged metadata
        /// (for servers whose ctime or inode numbers are unstable).
        #[arg(long, requires = "incremental")]
        rehash: bool,
        /// Back up a share marked in-use (crash-consistent).
        #[arg(long)]
        force: bool,
        /// Accept an incremental of a share that is empty where its parent
        /// backup had entries, or whose root is on another device than at
        /// its parent backup (both are what an unmounted share looks like).
        #[arg(long)]
        allow_root_change: bool,
        /// Back up this snapshot of the share (id or name) instead of the
        /// live share; the share stays available meanwhile.
        #[arg(long)]
        snapshot: Option<String>,
        /// KEY=VALUE, repeatable; the key known is `backup_type` (an
        /// enabled backup type's name).
        #[arg(long = "backup-options", value_name = "KEY=VALUE")]
        backup_options: Vec<String>,
        #[command(flatten)]
        exclusions: ExcludeArgs,
        share: String,
    },
    /// The backup types enabled in the configuration.
    #[command(subcommand)]
    Type(TypeCommand),
    /// List backups.
    List {
        #[arg(long)]
        share: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        all_projects: bool,
    },
    /// List the entries of a backup's tree: the children of PATH (the
    /// root when omitted), or PATH itself when it is not a directory. Read
    /// from the backup's layers; no data is read.
    Ls {
        backup: String,
        path: Option<String>,
        /// Every descendant, not only the children.
        #[arg(long, short = 'r')]
        recursive: bool,
        /// Type, mode, owner, size and mtime beside each path.
        #[arg(long, short = 'l')]
        long: bool,
    },
    /// What changed between two backups (at or below PATH): added (+),
    /// removed (-), modified (M), type changed (T), metadata only (U).
    /// Read from the layers alone.
    Diff {
        first: String,
        second: String,
        path: Option<String>,
    },
    /// Which backups hold paths matching a glob, newest backup first,
    /// with each version's size and mtime. A glob without a `/` matches a
    /// name at any depth (`*.conf`), one with a `/` the path from the
    /// share's root (`etc/**/*.conf`). Read from the layers alone.
    Find {
        pattern: String,
        /// Only this share's backups (id or name).
        #[arg(long)]
        share: Option<String>,
        /// Only backups created at or after this time (RFC 3339, or a
        /// duration ago: 7days).
        #[arg(long)]
        since: Option<String>,
        /// Only backups created at or before this time.
        #[arg(long)]
        until: Option<String>,
    },
    /// Write one path of a backup to standard output: a file's bytes, or a
    /// directory (`/` for the whole tree) as a tar stream with modes,
    /// owners, mtimes, links and xattrs. Every chunk is verified.
    Dump { backup: String, path: String },
    /// Show one backup.
    Show {
        backup: String,
        /// List the paths the backup skipped or warned about, and why.
        #[arg(long)]
        problems: bool,
    },
    /// Rename or re-describe a backup.
    Set {
        backup: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Reset the status (administrator; stops a running restore or backup).
        #[arg(long)]
        state: Option<String>,
    },
    /// Restore a backup into its share, or into an empty directory.
    Restore {
        backup: String,
        /// Restore into another share of the backup's project (id or name).
        #[arg(long, conflicts_with = "target_dir")]
        target_share: Option<String>,
        /// Restore into a plain directory, missing or empty.
        #[arg(long)]
        target_dir: Option<PathBuf>,
        /// Restore only the paths this glob matches (with their subtrees
        /// and the directories above them); repeatable. A glob without a
        /// `/` matches a name at any depth, one with a `/` the path from
        /// the share's root; `**` crosses directories.
        #[arg(long, value_name = "GLOB")]
        include: Vec<String>,
        /// Leave out the paths this glob matches, with their subtrees;
        /// repeatable; wins over --include.
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,
    },
    /// Print a backup's record (`backup_service`, `backup_url`), which
    /// `backup import` recreates in any catalog of the same repository.
    Export { backup: String },
    /// Recreate an exported backup record in this catalog (its parent's
    /// record must be here already).
    Import {
        backup_service: String,
        backup_url: String,
    },
    /// Apply a retention policy: remove the backups no rule keeps, merging
    /// each into the backups built on it so every kept backup still restores.
    Prune(PruneArgs),
    /// Delete backups.
    Delete {
        #[arg(required = true)]
        backups: Vec<String>,
        /// Also delete a backup being created: its process stops and cleans up.
        #[arg(long)]
        force: bool,
    },
}

/// `backup prune`: restic's `--keep-*` rules, per share.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Only this share's backups (id or name); default every share.
    #[arg(long)]
    pub share: Option<String>,
    /// Keep the newest N backups.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// … of each of the last N days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// … of each of the last N ISO weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// … of each of the last N months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// … of each of the last N years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup taken within this long before the newest (`30d`, `2w 3d`).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Say what would be kept and removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Then repack packs with more than this share unused (default: the
    /// config's `repack_max_unused_percent`, else 20%).
    #[arg(long, value_name = "PERCENT")]
    pub max_unused: Option<String>,
    /// Seconds to wait for running backups and restores to finish.
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}

/// `strata serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0: any free port, printed).
    #[arg(long, default_value = "127.0.0.1:8786")]
    pub listen: std::net::SocketAddr,
    /// Backups, restores and deletes that move data at once (others wait
    /// their turn, already recorded).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// `noauth` (the token is `user:project`; the user `admin` is an
    /// administrator) or `tokens` (opaque tokens from --token-file).
    #[arg(long, default_value = "noauth", value_parser = ["noauth", "tokens"])]
    pub auth: String,
    /// JSON: {"TOKEN": {"user": "u", "project": "p", "roles": ["admin"]}, …}.
    #[arg(long, required_if_eq("auth", "tokens"))]
    pub token_file: Option<PathBuf>,
    /// Directory in which `POST /v2/shares` makes new shares.
    #[arg(long)]
    pub share_root: Option<PathBuf>,
    /// Seconds running work may take to finish after SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub grace: u64,
    /// Connections served at once; one more is closed at once.
    #[arg(long, default_value_t = strata_server::MAX_CONNECTIONS)]
    pub max_connections: usize,
}
