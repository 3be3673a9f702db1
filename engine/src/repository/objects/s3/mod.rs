//! A repository in an S3 bucket (AWS, Ceph RGW, MinIO and the other
//! S3-compatible stores), through the `object_store` client: requests
//! are signed, retried with exponential backoff on throttling, 5xx
//! answers and lost connections, and run on a small private async runtime
//! that callers wait on.
//!
//! How each verb maps to S3:
//! - a put of a small object is one `PutObject`; a writer that grows past
//!   [`PART`] becomes a multipart upload whose parts are sent while the
//!   writer goes on, up to [`PARTS_IN_FLIGHT`] at a time;
//! - [`Cond::IfAbsent`] is `If-None-Match: *` and [`Cond::IfMatch`] is
//!   `If-Match: ETAG`, on `PutObject` and on `DeleteObject`. A server that
//!   ignores them is found out when the store is opened
//!   ([`S3Store::honours_conditional_puts`],
//!   [`S3Store::honours_conditional_deletes`]).
//! - A multipart upload cannot carry a condition in the client: before it
//!   completes, the object is looked up (a check, then the completion).
//!   Only packs and layers are large enough for one, and their names are
//!   random, never raced for.
//! - A ranged read is a ranged `GetObject`; [`ObjectReader::read_shared`]
//!   sends its ranges at once.
//! - An etag is S3's: the same bytes put again keep it (it is their MD5),
//!   which the store's contract allows.
//! - Unfinished puts are the bucket's incomplete multipart uploads under
//!   the prefix.

mod io;
mod signed;
mod url;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore as _, ObjectStoreExt as _, PutMode, PutOptions, UpdateVersion};

pub use url::{Credentials, S3Url, DEFAULT_RETRY};

use super::{
    Cond, Etag, Key, ObjectMeta, ObjectReader, ObjectStore, ObjectWriter, Page, Space, Unfinished,
    PAGE,
};
use crate::error::{Error, Result};

/// A writer past this many bytes becomes a multipart upload of parts this
/// large (S3's smallest part is 5 MiB).
pub const PART: usize = 16 << 20;
/// Parts of one upload being sent at once.
pub const PARTS_IN_FLIGHT: usize = 4;
/// The most one ranged read of a restore asks for; the reads of a span go
/// out together.
const READ_PIECE: usize = 4 << 20;
/// Threads racing to create a probe object, in each of `ROUNDS`.
const RACERS: usize = 8;
const ROUNDS: usize = 3;
/// Where the objects that probe a server's conditions are put.
const PROBE: &str = "locks/probe-";

/// A repository in a bucket, under a prefix.
pub struct S3Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    url: S3Url,
    /// The canonical URL, for messages.
    location: String,
    client: AmazonS3,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// Whether the server refused puts under `If-None-Match: *` and
    /// `If-Match` that did not hold, when the store was opened.
    conditional_puts: bool,
    /// Whether it refused a delete under an `If-Match` that did not hold.
    conditional_deletes: bool,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Store({})", self.inner.location)
    }
}

impl S3Store {
    /// Connects to the bucket and checks it is there and answers: a
    /// missing bucket is `NotFound`, refused credentials `NotPermitted`, an
    /// endpoint that does not answer an I/O error once the retries are
    /// spent. Then finds whether the server honours conditional requests.
    pub fn connect(url: &S3Url) -> Result<S3Store> {
        let mut inner = Inner::build(url)?;
        inner.check_bucket()?;
        (inner.conditional_puts, inner.conditional_deletes) = inner.probe_conditions()?;
        Ok(S3Store {
            inner: Arc::new(inner),
        })
    }

    /// Whether the server refuses a put under `If-None-Match: *` over an
    /// object and one under `If-Match` of another version. Some
    /// S3-compatible servers ignore both; on them, conditional puts cannot
    /// keep two writers apart.
    pub fn honours_conditional_puts(&self) -> bool {
        self.inner.conditional_puts
    }

    /// Whether the server refuses a delete under `If-Match` of another
    /// version. Where it does not, [`ObjectStore::delete`] under
    /// [`Cond::IfMatch`] is refused as `Unsupported`, never made
    /// unconditional.
    pub fn honours_conditional_deletes(&self) -> bool {
        self.inner.conditional_deletes
    }

    /// Whether the repository's `config` object is there.
    pub fn has_repository(&self) -> Result<bool> {
        Ok(self.stat(&Key::new("config")?)?.is_some())
    }
}

impl Inner {
    fn build(url: &S3Url) -> Result<Inner> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .with_retry(retry_config(url.retry.unwrap_or(DEFAULT_RETRY)))
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(300)),
            );
        if let Some(endpoint) = &url.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let region_set = std::env::var_os("AWS_REGION").is_some()
            || std::env::var_os("AWS_DEFAULT_REGION").is_some();
        match &url.region {
            Some(region) => builder = builder.with_region(region),
            None if !region_set => builder = builder.with_region("us-east-1"),
            None => {}
        }
        if let Some(c) = &url.credentials {
            builder = builder
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key);
            if let Some(token) = &c.session_token {
                builder = builder.with_token(token);
            }
        }
        // Packs and layers carry their own hashes, checked on every read:
        // hashing each body once more for the signature (SHA-256) would
        // cost a second pass over every byte for nothing.
        builder = builder
            .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
            .with_unsigned_payload(true);
        let location = url.to_string();
        let client = builder
            .build()
            .map_err(|e| Error::InvalidArgument(format!("S3 repository {location}: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io(&location, e))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Bug(format!("an HTTP client could not be made: {e}")))?;
        Ok(Inner {
            url: url.clone(),
            location,
            client,
            rt,
            http,
            conditional_puts: true,
            conditional_deletes: true,
        })
    }

    pub(crate) fn path(&self, key: &str) -> Path {
        Path::from(self.url.object_name(key))
    }

    /// Lists one object of the prefix: the bucket must exist and let us in.
    fn check_bucket(&self) -> Result<()> {
        let prefix = (!self.url.prefix.is_empty()).then(|| Path::from(self.url.prefix.as_str()));
        let first = self.rt.block_on(async {
            self.client
                .list(prefix.as_ref())
                .try_next()
                .await
                .map(|_| ())
        });
        match first {
            Ok(()) => Ok(()),
            // The client reports a listing's 404 as a generic error.
            Err(e)
                if matches!(e, object_store::Error::NotFound { .. }) || status(&e) == Some(404) =>
            {
                Err(Error::NotFound {
                    kind: "bucket",
                    name: format!("{} at {}", self.url.bucket, self.endpoint()),
                })
            }
            Err(e) => Err(self.error("", e)),
        }
    }

    /// Probes the server's conditions on objects of its own: in each of
    /// [`ROUNDS`], [`RACERS`] threads put one object under
    /// `If-None-Match: *` at once, and exactly one must win (a server that
    /// checks, then writes, lets several through, though not every time);
    /// then a put over it under `If-None-Match: *` and one under a wrong
    /// `If-Match` must be refused, and so must a delete under a wrong
    /// `If-Match`. Whether the puts' and the delete's conditions held.
    fn probe_conditions(&self) -> Result<(bool, bool)> {
        let (mut puts, mut deletes) = (true, true);
        for _ in 0..ROUNDS {
            let id = crate::repository::new_uuid()?;
            let key = Key::new(format!("{PROBE}{}", uuid::Uuid::from_bytes(id)))?;
            let won = self.race_to_create(&key)?;
            puts &= won == 1
                && matches!(
                    self.put(&key, b"again\n", Cond::IfAbsent),
                    Err(Error::Precondition { .. })
                );
            let wrong = Etag("\"0123456789abcdef0123456789abcdef\"".into());
            puts &= matches!(
                self.put(&key, b"again\n", Cond::IfMatch(wrong.clone())),
                Err(Error::Precondition { .. })
            );
            deletes &= matches!(
                self.delete(&key, Cond::IfMatch(wrong)),
                Err(Error::Precondition { .. })
            ) && self.head(&key)?.is_some();
            self.delete(&key, Cond::Any)?;
            if !puts {
                break;
            }
        }
        Ok((puts, deletes))
    }

    /// How many of [`RACERS`] threads putting `key` under
    /// `If-None-Match: *` at once succeeded.
    fn race_to_create(&self, key: &Key) -> Result<usize> {
        let start = std::sync::Barrier::new(RACERS);
        std::thread::scope(|scope| {
            let racing: Vec<_> = (0..RACERS)
                .map(|i| {
                    let (body, start) = (format!("probe {i}\n"), &start);
                    scope.spawn(move || {
                        // Each racer's connection is open before they start.
                        let warm = self.head(key);
                        start.wait();
                        warm?;
                        self.put(key, body.as_bytes(), Cond::IfAbsent)
                    })
                })
                .collect();
            let mut won = 0;
            for racer in racing {
                match racer.join() {
                    Ok(Ok(_)) => won += 1,
                    Ok(Err(Error::Precondition { .. })) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(Error::Bug("a probe of the S3 server panicked".into())),
                }
            }
            Ok(won)
        })
    }

    fn endpoint(&self) -> String {
        self.url
            .endpoint
            .clone()
            .unwrap_or_else(|| "AWS".to_string())
    }

    /// An `object_store` error on `key` as the engine's: a missing
    /// object is `Io(NotFound)`, a failed condition `Precondition`,
    /// refused credentials `NotPermitted`, anything else `Io`.
    pub(crate) fn error(&self, key: &str, e: object_store::Error) -> Error {
        use std::io::ErrorKind;
        let detail = e.to_string();
        match e {
            object_store::Error::NotFound { .. } => super::io_error(
                &self.location,
                key,
                std::io::Error::new(ErrorKind::NotFound, detail),
            ),
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => Error::Precondition {
                location: self.location.clone(),
                key: key.to_string(),
            },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Error::NotPermitted(format!(
                "the S3 server at {} refused {}: {detail}",
                self.endpoint(),
                self.url.object_name(key)
            )),
            _ if matches!(status(&e), Some(401 | 403)) => Error::NotPermitted(format!(
                "the S3 server at {} refused {}: {detail}",
                self.endpoint(),
                self.url.object_name(key)
            )),
            _ => super::io_error(&self.location, key, std::io::Error::other(detail)),
        }
    }

    fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        match self.rt.block_on(self.client.head(&self.path(key.as_str()))) {
            Ok(meta) => Ok(Some(ObjectMeta {
                len: meta.size,
                etag: etag_of(meta.e_tag, key)?,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key.as_str(), e)),
        }
    }

    /// One `PutObject` of `body` under `cond`.
    pub(crate) async fn put_async(
        &self,
        key: &Key,
        body: bytes::Bytes,
        cond: Cond,
    ) -> Result<Etag> {
        let mode = match cond {
            Cond::Any => PutMode::Overwrite,
            Cond::IfAbsent => PutMode::Create,
            Cond::IfMatch(Etag(e_tag)) => PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let path = self.path(key.as_str());
        let put = self.client.put_opts(&path, body.into(), opts).await;
        match put {
            Ok(result) => match result.e_tag {
                Some(e_tag) => Ok(Etag(e_tag)),
                None => self
                    .client
                    .head(&path)
                    .await
                    .map_err(|e| self.error(key.as_str(), e))
                    .and_then(|meta| etag_of(meta.e_tag, key)),
            },
            Err(e) => Err(self.error(key.as_str(), e)),
        }
    }

    fn put(&self, key: &Key, body: &[u8], cond: Cond) -> Result<Etag> {
        let body = bytes::Bytes::copy_from_slice(body);
        self.rt.block_on(self.put_async(key, body, cond))
    }

    fn delete(&self, key: &Key, cond: Cond) -> Result<()> {
        match cond {
            Cond::Any => match self
                .rt
                .block_on(self.client.delete(&self.path(key.as_str())))
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.error(key.as_str(), e)),
            },
            Cond::IfMatch(etag) => self.rt.block_on(signed::delete_if_match(self, key, &etag)),
            Cond::IfAbsent => Err(Error::Bug(format!(
                "a delete of {key} on condition that it is absent"
            ))),
        }
    }
}

/// The HTTP status an error of the client reports, where its text says
/// (the client keeps it in a type it does not export).
fn status(e: &object_store::Error) -> Option<u16> {
    const SAID: &str = "status code: ";
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if let Some(at) = text.find(SAID) {
            let code = text.get(at + SAID.len()..at + SAID.len() + 3)?;
            return code.parse().ok();
        }
        cause = c.source();
    }
    None
}

fn etag_of(e_tag: Option<String>, key: &Key) -> Result<Etag> {
    e_tag
        .map(Etag)
        .ok_or_else(|| Error::Unsupported(format!("the S3 server gave {key} no ETag")))
}

fn retry_config(budget: Duration) -> object_store::RetryConfig {
    object_store::RetryConfig {
        retry_timeout: budget,
        max_retries: if budget.is_zero() { 0 } else { 10 },
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
    }
}

impl ObjectStore for S3Store {
    fn location(&self) -> &str {
        &self.inner.location
    }

    fn writer(&self, key: &Key, cond: Cond) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(io::S3Writer::new(
            Arc::clone(&self.inner),
            key.clone(),
            cond,
        )))
    }

    fn put(&self, key: &Key, body: &[u8], cond: Cond) -> Result<Etag> {
        if body.len() > PART {
            return super::put_by_writer(self, key, body, cond);
        }
        self.inner.put(key, body, cond)
    }

    fn open(&self, key: &Key) -> Result<Box<dyn ObjectReader>> {
        let len = match self.inner.head(key)? {
            Some(meta) => meta.len,
            None => {
                return Err(super::io_error(
                    &self.inner.location,
                    key.as_str(),
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ))
            }
        };
        Ok(Box::new(io::S3Reader::new(
            Arc::clone(&self.inner),
            key.clone(),
            len,
            READ_PIECE,
        )))
    }

    fn stat(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        self.inner.head(key)
    }

    fn list(&self, prefix: &str, after: Option<&Key>) -> Result<Page> {
        let inner = &self.inner;
        // S3 lists by a string prefix, but the client by whole path
        // segments: list the directory the prefix is in, and keep what
        // starts with it.
        let dir = match prefix.rfind('/') {
            Some(at) => inner.url.object_name(&prefix[..at]),
            None => inner.url.prefix.clone(),
        };
        let dir = (!dir.is_empty()).then(|| Path::from(dir));
        let strip = match inner.url.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", inner.url.prefix),
        };
        let listed = inner.rt.block_on(async {
            let mut stream = match after {
                Some(after) => inner
                    .client
                    .list_with_offset(dir.as_ref(), &inner.path(after.as_str())),
                None => inner.client.list(dir.as_ref()),
            };
            let mut keys = Vec::new();
            while let Some(meta) = stream.try_next().await? {
                let name = meta.location.as_ref();
                let Some(key) = name.strip_prefix(strip.as_str()) else {
                    continue;
                };
                // A probe of the server's conditions is not the repository's.
                if key.starts_with(prefix) && !key.starts_with(PROBE) {
                    keys.push(key.to_string());
                    if keys.len() > PAGE {
                        break;
                    }
                }
            }
            Ok::<_, object_store::Error>(keys)
        });
        let mut keys = listed.map_err(|e| inner.error(prefix, e))?;
        keys.sort();
        let more = keys.len() > PAGE;
        keys.truncate(PAGE);
        let keys = keys.into_iter().map(Key::new).collect::<Result<Vec<_>>>()?;
        let next = match more {
            true => keys.last().cloned(),
            false => None,
        };
        Ok(Page { keys, next })
    }

    fn delete(&self, key: &Key, cond: Cond) -> Result<()> {
        self.inner.delete(key, cond)
    }

    fn space(&self) -> Result<Option<Space>> {
        Ok(None)
    }

    fn unfinished(&self) -> Result<Vec<Unfinished>> {
        self.inner.rt.block_on(signed::unfinished(&self.inner))
    }

    fn conditions_hold(&self) -> bool {
        self.inner.conditional_puts
    }

    fn discard(&self, unfinished: &Unfinished) -> Result<()> {
        self.inner
            .rt
            .block_on(signed::abort_upload(&self.inner, &unfinished.name))
    }
}
