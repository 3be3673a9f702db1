//! An S3 location as an operator writes it:
//! `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&retry=SECONDS]`.
//!
//! Credentials never appear in a location (it is printed in messages and
//! recorded in the catalog): they come from the standard AWS environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), or from the configuration's `[s3]` table, which
//! sets [`S3Url::credentials`].

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// A parsed `s3://` location.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Where the repository starts inside the bucket: no leading or
    /// trailing slash; empty for the bucket's root.
    pub prefix: String,
    /// The server's URL (`http://127.0.0.1:9000`); `None`: AWS itself, or
    /// `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// `None`: `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// How long a failing request keeps being retried; `None`: the
    /// default ([`DEFAULT_RETRY`]).
    pub retry: Option<Duration>,
    /// Keys given by the configuration rather than the environment.
    pub credentials: Option<Credentials>,
}

/// Access keys for the S3 API. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// How long a failing request is retried by default (throttling, 5xx,
/// lost connections), with exponential backoff.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(60);

fn invalid(text: &str, detail: impl fmt::Display) -> Error {
    Error::InvalidArgument(format!("invalid repository location {text:?}: {detail}"))
}

impl S3Url {
    /// Parses `text`, whose scheme `s3://` is already checked.
    pub fn parse(text: &str) -> Result<S3Url> {
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| invalid(text, "expected s3://BUCKET/PREFIX"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        check_bucket(bucket).map_err(|d| invalid(text, d))?;
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            super::super::check_key(&prefix).map_err(|_| invalid(text, "a bad prefix"))?;
        }
        let mut url = S3Url {
            bucket: bucket.to_string(),
            prefix,
            endpoint: None,
            region: None,
            retry: None,
            credentials: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| invalid(text, format!("option {pair:?} has no value")))?;
            match k {
                "endpoint" => {
                    if !(v.starts_with("http://") || v.starts_with("https://")) {
                        return Err(invalid(text, "endpoint must be an http:// or https:// URL"));
                    }
                    url.endpoint = Some(v.trim_end_matches('/').to_string());
                }
                "region" if !v.is_empty() => url.region = Some(v.to_string()),
                "retry" => {
                    let secs: f64 = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
                        .ok_or_else(|| invalid(text, format!("retry={v} is not seconds")))?;
                    url.retry = Some(Duration::from_secs_f64(secs));
                }
                _ => {
                    return Err(invalid(
                        text,
                        format!("unknown option {k:?} (it takes endpoint, region, retry)"),
                    ))
                }
            }
        }
        Ok(url)
    }

    /// The object name of `key` in the bucket.
    pub fn object_name(&self, key: &str) -> String {
        match self.prefix.is_empty() {
            true => key.to_string(),
            false => format!("{}/{key}", self.prefix),
        }
    }
}

/// S3's rules for bucket names: 3–63 of `a-z 0-9 . -`, starting and ending
/// with a letter or digit.
fn check_bucket(name: &str) -> std::result::Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if (3..=63).contains(&name.len())
        && ok_chars
        && ends(name.bytes().next())
        && ends(name.bytes().last())
    {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid bucket name"))
    }
}

impl fmt::Display for S3Url {
    /// The canonical URL, which [`S3Url::parse`] reads back (credentials
    /// are never in it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        let mut sep = '?';
        if let Some(endpoint) = &self.endpoint {
            write!(f, "{sep}endpoint={endpoint}")?;
            sep = '&';
        }
        if let Some(region) = &self.region {
            write!(f, "{sep}region={region}")?;
            sep = '&';
        }
        if let Some(retry) = self.retry {
            write!(f, "{sep}retry={}", retry.as_secs_f64())?;
        }
        Ok(())
    }
}

impl fmt::Debug for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        let text =
            "s3://backups/site-a/strata?endpoint=http://127.0.0.1:9000&region=eu-1&retry=2.5";
        let url = S3Url::parse(text).unwrap();
        assert_eq!(url.bucket, "backups");
        assert_eq!(url.prefix, "site-a/strata");
        assert_eq!(url.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(url.region.as_deref(), Some("eu-1"));
        assert_eq!(url.retry, Some(Duration::from_millis(2500)));
        assert_eq!(url.to_string(), text);
        assert_eq!(S3Url::parse(&url.to_string()).unwrap(), url);
        assert_eq!(url.object_name("config"), "site-a/strata/config");
        let root = S3Url::parse("s3://backups").unwrap();
        assert_eq!(root.prefix, "");
        assert_eq!(root.object_name("config"), "config");
        assert_eq!(root.to_string(), "s3://backups");
    }

    #[test]
    fn refuses_what_is_not_a_location() {
        for bad in [
            "s3://",
            "s3://Upper",
            "s3://ab",
            "s3://b_x/p",
            "s3://bucket/../x",
            "s3://bucket/a//b",
            "s3://bucket?endpoint=ftp://x",
            "s3://bucket?retry=-1",
            "s3://bucket?color=red",
            "s3://bucket?endpoint",
        ] {
            assert!(S3Url::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    proptest::proptest! {
        #[test]
        fn display_parses_back(
            bucket in "[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]",
            prefix in proptest::collection::vec("[a-zA-Z0-9_.-]{1,8}", 0..4),
            port in proptest::option::of(1u16..),
            region in proptest::option::of("[a-z]{2}-[a-z]{4,9}-[0-9]"),
            retry_ms in proptest::option::of(0u64..10_000_000),
        ) {
            let prefix: Vec<String> = prefix
                .into_iter()
                .filter(|c| c != "." && c != "..")
                .collect();
            let url = S3Url {
                bucket,
                prefix: prefix.join("/"),
                endpoint: port.map(|p| format!("http://127.0.0.1:{p}")),
                region,
                retry: retry_ms.map(Duration::from_millis),
                credentials: None,
            };
            proptest::prop_assert_eq!(S3Url::parse(&url.to_string()).unwrap(), url);
        }
    }

    #[test]
    fn credentials_are_never_printed() {
        let mut url = S3Url::parse("s3://backups/x").unwrap();
        url.credentials = Some(Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "very-secret".into(),
            session_token: None,
        });
        assert!(!format!("{url} {url:?}").contains("very-secret"));
    }
}
