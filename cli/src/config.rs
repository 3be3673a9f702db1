//! Settings: embedded defaults (XDG directories), an optional TOML config
//! file, then command-line flags, each overriding the one before.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use strata_engine::catalog::CatalogLocation;
use strata_engine::repository::objects::Location;
use strata_engine::EngineConfig;
use strata_format::config::{ChunkerParams, CompressionSetting};

use crate::args::Global;

/// The config file. Key names follow the seeds where they exist.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub catalog: Option<PathBuf>,
    /// A directory, or an `nfs://` or `s3://` URL.
    pub repository: Option<String>,
    /// `[s3]`: what an `s3://` repository is reached with where its URL
    /// does not say.
    pub s3: Option<S3Config>,
    /// `[path_map]`: `"/recorded/prefix" = "/local/prefix"`, where this
    /// node has the shares other nodes recorded (its mounts of the same
    /// exports).
    pub path_map: Option<std::collections::BTreeMap<PathBuf, PathBuf>>,
    /// `posix` (the default) or `nfs`: with `nfs`, the repository is the
    /// export `backup_mount_export` (`HOST:/PATH`), reached with the
    /// options in `backup_mount_options` (`vers=4.1`, `vers=3`, `port=N`).
    pub backup_driver: Option<String>,
    pub backup_mount_export: Option<String>,
    pub backup_mount_options: Option<String>,
    pub project: Option<String>,
    /// This node's identity (default: the hostname; `STRATA_HOST` wins):
    /// what its backups record as their host, and its operations and
    /// leases as their holder.
    pub host: Option<String>,
    /// `zstd` or `none`.
    pub backup_compression_algorithm: Option<String>,
    pub backup_compression_level: Option<i32>,
    pub availability_zone: Option<String>,
    /// Used when a new repository is created.
    pub chunker_min_size: Option<u32>,
    pub chunker_avg_size: Option<u32>,
    pub chunker_max_size: Option<u32>,
    pub pack_target_size: Option<u64>,
    /// Default quotas of projects without their own (unset: unlimited).
    pub quota_backups: Option<u64>,
    pub quota_backup_gigabytes: Option<u64>,
    /// `strata cleanup` also repacks packs with more than this percentage
    /// of unused bytes.
    pub repack_max_unused_percent: Option<u32>,
    /// `backup prune`'s rules when the command gives none (backups of the
    /// default type).
    pub retention: Option<RetentionConfig>,
    /// MiB a sweep, repack or prune may spend on the set of referenced
    /// chunks (default 256); past it a Bloom filter of that size is used.
    pub gc_memory_mib: Option<u32>,
    /// MiB a restore may spend on the part of the tree it holds at once
    /// (default 2); the tree is restored in windows of that size.
    pub restore_window_mib: Option<u32>,
    /// Absolute directories under which snapshots a storage made may be
    /// registered, besides each share's own snapshot locations.
    pub snapshot_roots: Option<Vec<PathBuf>>,
    /// Octal permission bits of repository objects (default `"0660"`) and
    /// directories (default `"0770"`), as the NFS backup driver sets them.
    pub repository_file_mode: Option<String>,
    pub repository_dir_mode: Option<String>,
    /// `[share_exclusions.NAME]` tables: what every backup of the share
    /// NAME (`"*"`: of every share) leaves out.
    pub share_exclusions: Option<std::collections::BTreeMap<String, ExclusionConfig>>,
}

/// The `[s3]` table. Keys here are used where the standard AWS environment
/// variables are not set (the environment wins, as AWS tools do); the
/// endpoint and region where the location names none.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

/// Completes an `s3://` location from the `[s3]` table.
fn with_s3_config(location: &mut Location, s3: Option<&S3Config>) -> Result<()> {
    let (Location::S3(url), Some(s3)) = (location, s3) else {
        return Ok(());
    };
    if url.endpoint.is_none() {
        if let Some(endpoint) = &s3.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                bail!("[s3] endpoint must be an http:// or https:// URL, not {endpoint:?}");
            }
            url.endpoint = Some(endpoint.trim_end_matches('/').to_string());
        }
    }
    if url.region.is_none() {
        url.region.clone_from(&s3.region);
    }
    let from_env = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
    match (&s3.access_key_id, &s3.secret_access_key) {
        (Some(id), Some(secret)) if !from_env => {
            url.credentials = Some(strata_engine::repository::objects::s3::Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: s3.session_token.clone(),
            });
        }
        (Some(_), None) | (None, Some(_)) => {
            bail!("[s3] needs both access_key_id and secret_access_key, or neither")
        }
        _ => {}
    }
    Ok(())
}

/// A `[share_exclusions.NAME]` table: `backup create`'s exclusion flags.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ExclusionConfig {
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub exclude_caches: bool,
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
}

/// An octal permission string (`"0660"`) within `0o777`.
fn octal_mode(key: &str, value: &str) -> Result<u32> {
    match u32::from_str_radix(value.trim_start_matches("0o"), 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => bail!("{key} must be octal permission bits such as \"0660\", not {value:?}"),
    }
}

/// A `[retention]` table: restic's `--keep-*` rules.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// A duration such as `30d` or `1y 2months`.
    pub keep_within: Option<String>,
}

impl RetentionConfig {
    pub fn to_retention(&self) -> Result<strata_engine::Retention> {
        Ok(strata_engine::Retention {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self
                .keep_within
                .as_deref()
                .map(|d| {
                    humantime::parse_duration(d)
                        .with_context(|| format!("keep_within {d:?} is not a duration"))
                })
                .transpose()?,
        })
    }
}

/// One backup type's table, `[NAME]`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct TypeConfig {
    /// The name its backups show as `backup_type` (default: the table's).
    pub backup_type_name: Option<String>,
    pub backup_compression_algorithm: Option<String>,
    pub backup_compression_level: Option<i32>,
    /// Whether its backups restore into other shares (default true).
    pub support_restore_to_target: Option<bool>,
    /// Its own repository (a directory or an `nfs://` URL), with its own
    /// chunk index; by default the default repository.
    pub repository: Option<String>,
    /// Used when its repository is created.
    pub chunker_min_size: Option<u32>,
    pub chunker_avg_size: Option<u32>,
    pub chunker_max_size: Option<u32>,
    pub pack_target_size: Option<u64>,
    /// `backup prune`'s rules for this type when the command gives none.
    pub retention: Option<RetentionConfig>,
}

/// Reads the config file: the backup types' tables (named by
/// `enabled_backup_types`) apart, then the rest, where an unknown key is an
/// error.
fn parse(text: &str) -> Result<(FileConfig, Vec<(String, TypeConfig)>)> {
    let mut table: toml::Table = toml::from_str(text)?;
    // Manila's `enabled_backup_types`: each type is a table of its name.
    let names: Vec<String> = match table.remove("enabled_backup_types") {
        None => Vec::new(),
        Some(v) => v
            .try_into()
            .context("enabled_backup_types must be a list of table names")?,
    };
    let mut types = Vec::new();
    for name in &names {
        let section = table.remove(name).with_context(|| {
            format!("backup type {name:?} is enabled but has no [{name}] table")
        })?;
        let t: TypeConfig = section
            .try_into()
            .with_context(|| format!("in the [{name}] table"))?;
        if types.iter().any(|(k, _)| k == name) {
            bail!("backup type {name:?} is enabled twice");
        }
        types.push((name.clone(), t));
    }
    let file: FileConfig = toml::Value::Table(table).try_into()?;
    Ok((file, types))
}

/// The compression an algorithm and level name (`None`: neither is set).
fn compression(algorithm: Option<&str>, level: Option<i32>) -> Result<Option<CompressionSetting>> {
    let setting = match algorithm {
        None => level.map(|level| CompressionSetting::Zstd { level }),
        Some("zstd") => Some(CompressionSetting::Zstd {
            level: level.unwrap_or(3),
        }),
        Some("none") => Some(CompressionSetting::None),
        Some(other) => bail!("backup_compression_algorithm must be zstd or none, not {other:?}"),
    };
    if let Some(c) = setting {
        c.validate()?;
    }
    Ok(setting)
}

fn xdg(var: &str, fallback: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("neither $HOME nor $XDG_* is set; pass --catalog and --repository")?;
    Ok(Path::new(&home).join(fallback))
}

/// The flag wins, then the config file's driver keys, then its
/// `repository`, then the embedded default.
fn repository_location(global: &Global, file: &FileConfig) -> Result<Location> {
    if let Some(s) = &global.repository {
        return Ok(Location::parse(s)?);
    }
    match file.backup_driver.as_deref() {
        None | Some("posix") => {}
        Some("nfs") => {
            let export = file
                .backup_mount_export
                .as_deref()
                .context("backup_driver = nfs needs backup_mount_export = HOST:/PATH")?;
            let options = file.backup_mount_options.as_deref().unwrap_or("");
            return Ok(Location::from_mount_export(export, options)?);
        }
        Some(other) => bail!("backup_driver must be posix or nfs, not {other:?}"),
    }
    match &file.repository {
        Some(s) => Ok(Location::parse(s)?),
        None => Ok(Location::Posix(
            xdg("XDG_DATA_HOME", ".local/share")?.join("strata/repository"),
        )),
    }
}

/// The environment's NFS retry budget, unless the location names one.
fn with_env_retry(location: &mut Location) {
    if let Location::Nfs(url) = location {
        if let Some(secs) = std::env::var("STRATA_NFS_RETRY_SECS")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        {
            url.retry
                .get_or_insert(std::time::Duration::from_secs_f64(secs));
        }
    }
}

pub fn load(global: &Global) -> Result<EngineConfig> {
    let (file, backup_types) = match &global.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config {}", path.display()))?;
            parse(&text).with_context(|| format!("parsing config {}", path.display()))?
        }
        None => (FileConfig::default(), Vec::new()),
    };
    // The node's identity, before anything reads it.
    if let Ok(host) = std::env::var("STRATA_HOST") {
        strata_engine::process::check_host(&host).context("STRATA_HOST")?;
    }
    if let Some(host) = &file.host {
        strata_engine::process::use_host_name(host).context("the config's host")?;
    }
    let catalog = match global.catalog.clone().or(file.catalog.clone()) {
        // A path, or a URL the engine recognises (and may refuse).
        Some(p) => match p.to_str() {
            Some(text) => CatalogLocation::parse(text)?,
            None => CatalogLocation::Sqlite(p),
        },
        None => CatalogLocation::Sqlite(
            xdg("XDG_STATE_HOME", ".local/state")?.join("strata/catalog.db"),
        ),
    };
    let mut repository = repository_location(global, &file)?;
    with_env_retry(&mut repository);
    with_s3_config(&mut repository, file.s3.as_ref())?;
    // `STRATA_DIRECT_IO=0` turns direct writes off for restores.
    let direct_io = std::env::var("STRATA_DIRECT_IO").map_or(true, |v| v != "0");
    let mut config = EngineConfig::new(catalog, repository);
    if let Some(map) = &file.path_map {
        config.path_map = strata_engine::PathMap::new(map.clone()).context("[path_map]")?;
    }
    config.direct_io = direct_io;
    if let Some(project) = global.project.clone().or(file.project.clone()) {
        config.project = project;
    }
    config.availability_zone = file.availability_zone.clone();
    config.default_quota = strata_engine::store::Quota {
        backups: file.quota_backups,
        backup_gigabytes: file.quota_backup_gigabytes,
    };
    if let Some(pct) = file.repack_max_unused_percent {
        if pct > 100 {
            bail!("repack_max_unused_percent is a percentage (0-100), not {pct}");
        }
    }
    config.repack_max_unused_percent = file.repack_max_unused_percent;
    if let Some(mib) = file.gc_memory_mib {
        if mib == 0 {
            bail!("gc_memory_mib must be at least 1");
        }
        config.gc_memory_bytes = (mib as usize) << 20;
    }
    if let Some(mib) = file.restore_window_mib {
        if mib == 0 {
            bail!("restore_window_mib must be at least 1");
        }
        config.restore_window_bytes = (mib as usize) << 20;
    }
    if let Some(m) = &file.repository_file_mode {
        config.repository_modes.file = octal_mode("repository_file_mode", m)?;
    }
    if let Some(m) = &file.repository_dir_mode {
        config.repository_modes.dir = octal_mode("repository_dir_mode", m)?;
    }
    if config.repository_modes.dir & 0o700 != 0o700 || config.repository_modes.file & 0o600 != 0o600
    {
        bail!("repository modes must let their owner read and write (and enter directories)");
    }
    for root in file.snapshot_roots.iter().flatten() {
        let text = root.to_str().unwrap_or_default();
        strata_engine::validate::absolute_path("snapshot root", text)
            .with_context(|| format!("snapshot_roots: {}", root.display()))?;
        config.snapshot_roots.push(root.clone());
    }
    if let Some(r) = &file.retention {
        config.retention = r.to_retention().context("[retention]")?;
    }
    for (share, e) in file.share_exclusions.iter().flatten() {
        let rules = strata_format::layer::Exclusions {
            patterns: e.exclude.clone(),
            caches: e.exclude_caches,
            if_present: e.exclude_if_present.clone(),
            excluded: 0,
        };
        strata_engine::backup::exclude::Excluder::new(&rules)
            .with_context(|| format!("[share_exclusions.{share:?}]"))?;
        config.share_exclusions.insert(share.clone(), rules);
    }
    config.compression = compression(
        file.backup_compression_algorithm.as_deref(),
        file.backup_compression_level,
    )?;
    if let Some(c) = config.compression {
        config.new_repository.compression = c;
    }
    let d = ChunkerParams::default();
    config.new_repository.chunker = ChunkerParams {
        min_size: file.chunker_min_size.unwrap_or(d.min_size),
        avg_size: file.chunker_avg_size.unwrap_or(d.avg_size),
        max_size: file.chunker_max_size.unwrap_or(d.max_size),
    };
    if let Some(size) = file.pack_target_size {
        config.new_repository.pack_target_size = size;
    }
    for (name, t) in backup_types {
        let compression = compression(
            t.backup_compression_algorithm.as_deref(),
            t.backup_compression_level,
        )?;
        let mut new_repository = config.new_repository.clone();
        if let Some(c) = compression {
            new_repository.compression = c;
        }
        let c = config.new_repository.chunker;
        new_repository.chunker = ChunkerParams {
            min_size: t.chunker_min_size.unwrap_or(c.min_size),
            avg_size: t.chunker_avg_size.unwrap_or(c.avg_size),
            max_size: t.chunker_max_size.unwrap_or(c.max_size),
        };
        if let Some(size) = t.pack_target_size {
            new_repository.pack_target_size = size;
        }
        let mut repository = t
            .repository
            .as_deref()
            .map(Location::parse)
            .transpose()
            .with_context(|| format!("the repository of backup type {name:?}"))?;
        if let Some(location) = &mut repository {
            with_env_retry(location);
            with_s3_config(location, file.s3.as_ref())?;
        }
        config.backup_types.push(strata_engine::BackupType {
            display_name: t.backup_type_name.clone().unwrap_or_else(|| name.clone()),
            support_restore_to_target: t.support_restore_to_target.unwrap_or(true),
            compression,
            repository,
            new_repository,
            retention: match &t.retention {
                Some(r) => r
                    .to_retention()
                    .with_context(|| format!("[{name}.retention]"))?,
                None => strata_engine::Retention::default(),
            },
            name,
        });
    }
    Ok(config)
}
