//! Where a repository is: a directory, an export reached over NFS, or a
//! bucket of an S3-compatible store (`s3://`, see [`super::s3::S3Url`]).
//!
//! An NFS location is written `nfs://HOST[:PORT]/PATH[?version=3|4.1&...]`,
//! or given as the seeds' `backup_mount_export = HOST:/PATH` with
//! `backup_mount_options = vers=4.1`. Over NFSv4 `PATH` is a path in the
//! server's pseudo filesystem, over NFSv3 the exported directory; either
//! may continue below the export into the repository's own directory.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// A repository location: which object store adapter, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Posix(PathBuf),
    Nfs(NfsUrl),
    /// A bucket (and a prefix in it) of an S3-compatible store.
    S3(super::s3::S3Url),
    /// Objects in this process's memory, under a name (fast tests): never
    /// parsed from what an operator writes, since nothing in it outlives
    /// the process.
    Memory(String),
}

/// A parsed `nfs://` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsUrl {
    pub host: String,
    pub port: Option<u16>,
    /// Absolute path on the server, without a trailing slash.
    pub path: String,
    /// `3`, `4.0`, `4.1` or `4.2`.
    pub version: String,
    /// Further client options passed through (`uid`, `gid`, `nfsport`,
    /// `mountport`, `noresvport`), in the order given.
    pub options: Vec<(String, String)>,
    /// How long a failing call keeps retrying (`retry=SECONDS`); `None`:
    /// the client's default.
    pub retry: Option<std::time::Duration>,
}

const VERSIONS: [&str; 4] = ["3", "4.0", "4.1", "4.2"];
const PASSED_THROUGH: [&str; 5] = ["uid", "gid", "nfsport", "mountport", "noresvport"];
/// Used when a location names no version: needs no rpcbind on the server.
pub const DEFAULT_NFS_VERSION: &str = "4.1";

fn invalid(what: &str, detail: impl fmt::Display) -> Error {
    Error::InvalidArgument(format!("invalid repository location {what:?}: {detail}"))
}

impl Location {
    /// Parses a `--repository` value: an `nfs://` or `s3://` URL, or a
    /// directory.
    pub fn parse(s: &str) -> Result<Location> {
        if let Some(rest) = s.strip_prefix("nfs://") {
            return NfsUrl::parse(s, rest).map(Location::Nfs);
        }
        if s.starts_with("s3://") {
            return super::s3::S3Url::parse(s).map(Location::S3);
        }
        if s.contains("://") {
            return Err(invalid(
                s,
                "only directories, nfs:// and s3:// URLs are supported",
            ));
        }
        if s.is_empty() {
            return Err(invalid(s, "empty"));
        }
        Ok(Location::Posix(PathBuf::from(s)))
    }

    /// The seeds' form: `backup_mount_export = HOST:/PATH` and
    /// `backup_mount_options`, as the seeds write it (`'-o vers=4',
    /// minorversion=1`: quotes and `-o` are the mount command's). Each
    /// option is honoured or refused by name (see `mount_options`).
    pub fn from_mount_export(export: &str, options: &str) -> Result<Location> {
        let (host, path) = export
            .split_once(":/")
            .ok_or_else(|| invalid(export, "expected HOST:/PATH"))?;
        let mut url = format!("nfs://{host}/{path}");
        let query = mount_options(options).map_err(|e| invalid(options, e))?;
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        Location::parse(&url)
    }
}

/// What `backup_mount_options` asks of strata's NFS client, as location
/// query options:
/// - `vers`/`nfsvers` (`3`, `4`, `4.0`, `4.1`, `4.2`), with `minorversion`
///   (`vers=4,minorversion=1` is 4.1);
/// - `port` (the NFS port), `mountport`, `noresvport`;
/// - `hard` (a call retries without end, as a hard mount does), `soft`
///   (it gives up after `timeo` tenths of a second times `retrans + 1`,
///   the kernel's defaults 600 and 2 where not given), `timeo`, `retrans`;
/// - `proto=tcp` and `sec=sys`, which is what the client speaks.
///
/// Anything else (`rsize`, `proto=udp`, `sec=krb5`, …) is refused by name:
/// an option an operator wrote is never silently dropped.
pub(crate) fn mount_options(options: &str) -> std::result::Result<Vec<String>, String> {
    let cleaned: String = options
        .chars()
        .filter(|c| *c != '\'' && *c != '"')
        .collect();
    let mut query = Vec::new();
    let (mut vers, mut minor) = (None::<String>, None::<String>);
    let (mut soft, mut hard) = (false, false);
    let (mut timeo, mut retrans) = (600u64, 2u64);
    let number = |k: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("mount option {k} needs a number, not {v:?}"))
    };
    let tokens = cleaned
        .split([',', ' ', '\t'])
        .map(|t| t.strip_prefix("-o").unwrap_or(t))
        .filter(|t| !t.is_empty());
    for opt in tokens {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        match (k, v) {
            ("vers" | "nfsvers", v) => vers = Some(v.to_string()),
            ("minorversion", v) => minor = Some(number(k, v)?.to_string()),
            ("port", v) => query.push(format!("nfsport={}", number(k, v)?)),
            ("mountport", v) => query.push(format!("mountport={}", number(k, v)?)),
            ("noresvport", "") => query.push("noresvport=true".into()),
            ("hard", "") => hard = true,
            ("soft", "") => soft = true,
            ("timeo", v) => timeo = number(k, v)?,
            ("retrans", v) => retrans = number(k, v)?,
            ("proto", "tcp") | ("sec", "sys") => {}
            _ => {
                return Err(format!(
                    "mount option {opt:?} is not supported by strata's NFS client (it takes \
                     vers, nfsvers, minorversion, port, mountport, noresvport, hard, soft, \
                     timeo, retrans, proto=tcp, sec=sys)"
                ))
            }
        }
    }
    let version = match (vers.as_deref(), minor.as_deref()) {
        (None, None) => None,
        (None, Some(_)) => return Err("minorversion without vers=4".into()),
        (Some("4"), Some(m)) => Some(format!("4.{m}")),
        (Some("4"), None) => Some("4.0".into()),
        (Some(v), None) => Some(v.to_string()),
        (Some(v), Some(m)) if v == format!("4.{m}") => Some(v.to_string()),
        (Some(v), Some(m)) => return Err(format!("vers={v} and minorversion={m} disagree")),
    };
    if let Some(v) = version {
        query.push(format!("version={v}"));
    }
    match (hard, soft) {
        (true, true) => return Err("mount options hard and soft contradict".into()),
        // Without end: as long as a duration can be written here.
        (true, false) => query.push("retry=900000000".into()),
        (false, true) => {
            let secs = timeo.saturating_mul(retrans.saturating_add(1)) / 10;
            query.push(format!("retry={secs}"));
        }
        (false, false) => {}
    }
    Ok(query)
}

impl NfsUrl {
    fn parse(whole: &str, rest: &str) -> Result<NfsUrl> {
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = main
            .split_once('/')
            .ok_or_else(|| invalid(whole, "no export path after the host"))?;
        // An IPv6 host is bracketed: `[::1]:2049`.
        let split_at = match authority.find(']') {
            Some(end) if authority.starts_with('[') => authority[end..].find(':').map(|i| end + i),
            _ => authority.rfind(':'),
        };
        let (host, port) = match split_at {
            Some(i) => {
                let p = &authority[i + 1..];
                let port = p
                    .parse::<u16>()
                    .map_err(|_| invalid(whole, format!("bad port {p:?}")))?;
                (authority[..i].to_string(), Some(port))
            }
            None => (authority.to_string(), None),
        };
        if host.is_empty() {
            return Err(invalid(whole, "no host"));
        }
        let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if parts.is_empty() {
            return Err(invalid(whole, "the export path must not be /"));
        }
        if parts.iter().any(|c| *c == "." || *c == "..") {
            return Err(invalid(whole, "`.` and `..` are not allowed in the path"));
        }
        let mut url = NfsUrl {
            host,
            port,
            path: format!("/{}", parts.join("/")),
            version: DEFAULT_NFS_VERSION.to_string(),
            options: Vec::new(),
            retry: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "version" | "vers" => {
                    if !VERSIONS.contains(&v) {
                        return Err(invalid(
                            whole,
                            format!("version must be 3 or 4.1, not {v:?}"),
                        ));
                    }
                    url.version = v.to_string();
                }
                "retry" => {
                    let secs = v
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                        .ok_or_else(|| {
                            invalid(whole, format!("retry must be seconds, not {v:?}"))
                        })?;
                    url.retry = Some(std::time::Duration::from_secs_f64(secs));
                }
                k if PASSED_THROUGH.contains(&k) => {
                    url.options.push((k.to_string(), v.to_string()));
                }
                other => return Err(invalid(whole, format!("unknown option {other:?}"))),
            }
        }
        Ok(url)
    }

    /// The same location with `path` extended by `below` (a relative path).
    pub fn join(&self, below: &str) -> NfsUrl {
        let mut out = self.clone();
        for c in below.split('/').filter(|c| !c.is_empty()) {
            out.path.push('/');
            out.path.push_str(c);
        }
        out
    }

    /// The same location one directory up, if the path has more than one
    /// component.
    pub fn parent(&self) -> Option<(NfsUrl, String)> {
        let (up, name) = self.path.rsplit_once('/')?;
        if up.is_empty() {
            return None;
        }
        let mut out = self.clone();
        out.path = up.to_string();
        Some((out, name.to_string()))
    }

    /// The URL handed to the NFS client: non-privileged source ports unless
    /// the location asks otherwise.
    pub fn client_url(&self) -> String {
        let mut s = self.without_options();
        s.push_str(&format!("?version={}", self.version));
        if !self.options.iter().any(|(k, _)| k == "noresvport") {
            s.push_str("&noresvport=true");
        }
        for (k, v) in &self.options {
            s.push_str(&format!("&{k}={v}"));
        }
        s
    }

    /// `nfs://host[:port]/path`, as shown in messages.
    pub fn without_options(&self) -> String {
        match self.port {
            Some(p) => format!("nfs://{}:{p}{}", self.host, self.path),
            None => format!("nfs://{}{}", self.host, self.path),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Posix(p) => write!(f, "{}", p.display()),
            Location::Nfs(u) => write!(f, "{u}"),
            Location::S3(u) => write!(f, "{u}"),
            Location::Memory(name) => write!(f, "memory:{name}"),
        }
    }
}

impl fmt::Display for NfsUrl {
    /// The canonical URL, which [`Location::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}?version={}", self.without_options(), self.version)?;
        for (k, v) in &self.options {
            write!(f, "&{k}={v}")?;
        }
        if let Some(retry) = self.retry {
            write!(f, "&retry={}", retry.as_secs_f64())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urls_and_mount_exports() {
        let Location::Nfs(u) = Location::parse("nfs://127.0.0.1/export/repo?version=3").unwrap()
        else {
            panic!("not nfs")
        };
        assert_eq!(
            (u.host.as_str(), u.path.as_str(), u.version.as_str()),
            ("127.0.0.1", "/export/repo", "3")
        );
        assert_eq!(
            u.client_url(),
            "nfs://127.0.0.1/export/repo?version=3&noresvport=true"
        );
        let seeds =
            Location::from_mount_export("nas:/srv/backups", "vers=4.1,hard,port=2050").unwrap();
        assert_eq!(
            seeds.to_string(),
            "nfs://nas/srv/backups?version=4.1&nfsport=2050&retry=900000000"
        );
        let Location::Nfs(d) = Location::parse("nfs://h:2049/e").unwrap() else {
            panic!("not nfs")
        };
        assert_eq!(
            (d.port, d.version.as_str()),
            (Some(2049), DEFAULT_NFS_VERSION)
        );
        assert_eq!(d.join("a/b").path, "/e/a/b");
        assert!(d.parent().is_none());
        let Location::Nfs(v6) = Location::parse("nfs://[::1]:20490/e").unwrap() else {
            panic!("not nfs")
        };
        assert_eq!((v6.host.as_str(), v6.port), ("[::1]", Some(20490)));
        assert_eq!(
            Location::parse("/srv/r").unwrap(),
            Location::Posix("/srv/r".into())
        );
    }

    #[test]
    fn bad_locations_are_refused() {
        for bad in [
            "nfs://host",
            "nfs:///export",
            "nfs://host/",
            "nfs://host/e?version=4",
            "nfs://host/e?rsize=1",
            "nfs://host:x/e",
            "nfs://host/e/../f",
            "gs://bucket/x",
            "s3://Bucket/x",
            "",
        ] {
            assert!(
                matches!(Location::parse(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
        assert!(Location::from_mount_export("nas/srv", "").is_err());
    }

    proptest! {
        #[test]
        fn display_parses_back(
            host in "[a-z][a-z0-9.-]{0,12}",
            port in proptest::option::of(1u16..),
            path in proptest::collection::vec("[a-zA-Z0-9_-]{1,8}", 1..4),
            version in proptest::sample::select(VERSIONS.to_vec()),
            uid in proptest::option::of(0u32..70000),
            retry_ms in proptest::option::of(0u64..10_000_000),
        ) {
            let url = NfsUrl {
                host,
                port,
                path: format!("/{}", path.join("/")),
                version: version.to_string(),
                options: uid.map(|u| vec![("uid".to_string(), u.to_string())]).unwrap_or_default(),
                retry: retry_ms.map(std::time::Duration::from_millis),
            };
            let back = Location::parse(&url.to_string()).unwrap();
            prop_assert_eq!(back, Location::Nfs(url));
        }
    }

    #[test]
    fn every_mount_option_is_honoured_or_refused_by_name() {
        let url =
            |opts: &str| Location::from_mount_export("nas:/srv/b", opts).map(|l| l.to_string());
        // The seeds' own spelling, quotes and `-o` included.
        assert_eq!(
            url("'-o vers=4',minorversion=1").unwrap(),
            "nfs://nas/srv/b?version=4.1"
        );
        assert_eq!(
            url("vers=4,minorversion=1").unwrap(),
            "nfs://nas/srv/b?version=4.1"
        );
        assert_eq!(url("-o vers=3").unwrap(), "nfs://nas/srv/b?version=3");
        assert_eq!(url("nfsvers=4.2").unwrap(), "nfs://nas/srv/b?version=4.2");
        assert_eq!(
            url("soft,timeo=100,retrans=3,proto=tcp,sec=sys").unwrap(),
            "nfs://nas/srv/b?version=4.1&retry=40"
        );
        for (bad, named) in [
            ("rsize=65536", "rsize"),
            ("proto=udp", "proto=udp"),
            ("sec=krb5", "sec=krb5"),
            ("vers=3,minorversion=1", "disagree"),
            ("hard,soft", "contradict"),
            ("timeo=soon", "timeo"),
            ("vers=5", "version"),
            ("noatime", "noatime"),
        ] {
            let e = url(bad).unwrap_err().to_string();
            assert!(e.contains(named), "{bad}: {e}");
        }
    }
}
