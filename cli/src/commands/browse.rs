//! `backup ls`, `find` and `diff`: a backup's tree read from its layers;
//! `backup dump`: one path of it written out.

use anyhow::Result;
use serde_json::json;
use strata_engine::select::Patterns;
use strata_engine::{Engine, Error, FindScope};
use strata_format::layer::{Entry, EntryKind};

use crate::args::{Format, Global};
use crate::output::{self, Record};

pub const LS: &[(&str, &str)] = &[("Path", "path")];

pub const LS_LONG: &[(&str, &str)] = &[
    ("Type", "type"),
    ("Mode", "mode"),
    ("Owner", "owner"),
    ("Size", "size"),
    ("Modified", "mtime"),
    ("Path", "path"),
    ("Target", "target"),
];

pub const FIND: &[(&str, &str)] = &[
    ("Backup ID", "backup_id"),
    ("Backup Name", "backup_name"),
    ("Created At", "created_at"),
    ("Type", "type"),
    ("Size", "size"),
    ("Modified", "mtime"),
    ("Path", "path"),
];

pub const DIFF: &[(&str, &str)] = &[("Change", "change"), ("Path", "path")];

/// A path as the operator wrote it, as the tree stores it: relative, no
/// leading, trailing or doubled slash.
fn stored_path(text: &str) -> Result<Option<Vec<u8>>> {
    let trimmed = text.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(None);
    }
    let bytes = trimmed.as_bytes().to_vec();
    if strata_format::path::validate(&bytes).is_err() {
        return Err(Error::InvalidArgument(format!("invalid path {text:?} in a backup")).into());
    }
    Ok(Some(bytes))
}

fn kind(entry: &Entry) -> &'static str {
    match entry.kind {
        EntryKind::File { .. } => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink { .. } => "symlink",
        EntryKind::Hardlink { .. } => "hardlink",
    }
}

fn shown(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

fn row(entry: &Entry, long: bool) -> Record {
    let mut row: Record = Vec::new();
    if long {
        let size = match &entry.kind {
            EntryKind::File { size, .. } => *size,
            _ => 0,
        };
        let mtime = strata_engine::clock::iso8601(entry.mtime_ns);
        row.push(("type", json!(kind(entry))));
        row.push(("mode", json!(format!("{:04o}", entry.mode & 0o7777))));
        row.push(("owner", json!(format!("{}:{}", entry.uid, entry.gid))));
        row.push(("size", json!(size)));
        row.push(("mtime", json!(mtime)));
    }
    row.push(("path", json!(shown(&entry.path))));
    if let EntryKind::Symlink { target } | EntryKind::Hardlink { target } = &entry.kind {
        row.push(("target", json!(String::from_utf8_lossy(target))));
    }
    row
}

pub fn ls(
    engine: &Engine,
    global: &Global,
    backup: &str,
    at: Option<&str>,
    recursive: bool,
    long: bool,
) -> Result<u8> {
    let b = engine.find_backup(backup)?;
    let at = at.map(stored_path).transpose()?.flatten();
    let mut rows = Vec::new();
    engine.list_tree(&b, at.as_deref(), recursive, &mut |e| {
        rows.push(row(e, long));
        Ok(())
    })?;
    let headers = if long { LS_LONG } else { LS };
    output::list(global.format, &global.columns, headers, &rows)?;
    Ok(0)
}

pub fn diff(
    engine: &Engine,
    global: &Global,
    first: &str,
    second: &str,
    at: Option<&str>,
) -> Result<u8> {
    let (a, b) = (engine.find_backup(first)?, engine.find_backup(second)?);
    let at = at.map(stored_path).transpose()?.flatten();
    let mut rows = Vec::new();
    engine.diff_backups(&a, &b, at.as_deref(), &mut |d| {
        let change = match global.format {
            Format::Table => d.change.letter().to_string(),
            _ => d.change.as_str().to_string(),
        };
        rows.push(vec![
            ("change", json!(change)),
            ("path", json!(shown(&d.path))),
        ]);
        Ok(())
    })?;
    output::list(global.format, &global.columns, DIFF, &rows)?;
    Ok(0)
}

pub fn find(
    engine: &Engine,
    global: &Global,
    pattern: &str,
    share: Option<&str>,
    since: &Option<String>,
    until: &Option<String>,
) -> Result<u8> {
    let pattern = Patterns::new(&[pattern.to_string()])?;
    let scope = FindScope {
        share: share
            .map(|s| engine.find_share(s))
            .transpose()?
            .map(|s| s.id),
        since: since
            .as_deref()
            .map(|t| super::parse_time("--since", t))
            .transpose()?,
        until: until
            .as_deref()
            .map(|t| super::parse_time("--until", t))
            .transpose()?,
    };
    let mut rows = Vec::new();
    let searched = engine.find_paths(&pattern, &scope, &mut |b, e| {
        let size = match &e.kind {
            EntryKind::File { size, .. } => *size,
            _ => 0,
        };
        rows.push(vec![
            ("backup_id", json!(b.id.to_string())),
            ("backup_name", super::opt(&b.name)),
            ("created_at", super::time(Some(b.created_at))),
            ("type", json!(kind(e))),
            ("size", json!(size)),
            ("mtime", json!(strata_engine::clock::iso8601(e.mtime_ns))),
            ("path", json!(shown(&e.path))),
        ]);
        Ok(())
    })?;
    output::list(global.format, &global.columns, FIND, &rows)?;
    if global.format == Format::Table {
        eprintln!("{} matches in {searched} backups", rows.len());
    }
    Ok(0)
}

pub fn dump(engine: &Engine, backup: &str, at: &str) -> Result<u8> {
    let b = engine.find_backup(backup)?;
    let at = stored_path(at)?;
    let tree = engine.open_tree(&b)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let dumped = tree.dump(at.as_deref(), &mut out)?;
    if dumped.xattrs_skipped > 0 {
        eprintln!(
            "warning: {} extended attributes with non-UTF-8 names were left out (tar names them in UTF-8)",
            dumped.xattrs_skipped
        );
    }
    Ok(0)
}
