//! The S3 requests the client has no verb for, sent as URLs it signs: a
//! delete under `If-Match`, and the listing and aborting of incomplete
//! multipart uploads. The client signs them (SigV4, the condition header
//! bound into the signature); this module only sends them and reads the
//! answer.

use std::time::Duration;

use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer as _};
use serde::Deserialize;

use super::Inner;
use crate::error::{Error, Result};
use crate::repository::objects::{Etag, Key, Unfinished};

/// How long a signed URL is valid: it is used at once.
const VALID: Duration = Duration::from_secs(300);

/// Deletes `key` only if its version is `etag`: `Precondition` if not
/// (also when it is gone). On a server that ignores the condition this is
/// refused as `Unsupported` before anything is sent (the store learnt it
/// when opened).
pub(super) async fn delete_if_match(inner: &Inner, key: &Key, etag: &Etag) -> Result<()> {
    if !inner.conditional_deletes {
        return Err(Error::Unsupported(format!(
            "the S3 server of {} ignores If-Match on deletes",
            inner.location
        )));
    }
    let if_match = HeaderValue::from_str(&etag.0)
        .map_err(|_| Error::Bug(format!("etag {:?} is not a header value", etag.0)))?;
    let opts = SignedUrlOptions::new()
        .with_signed_header(HeaderName::from_static("if-match"), if_match.clone());
    let path = inner.path(key.as_str());
    let response = send(
        inner,
        key.as_str(),
        Method::DELETE,
        &path,
        &opts,
        Some(if_match),
    )
    .await?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        404 | 409 | 412 => Err(Error::Precondition {
            location: inner.location.clone(),
            key: key.to_string(),
        }),
        _ => Err(refused(inner, key.as_str(), response).await),
    }
}

/// The incomplete multipart uploads under the repository's prefix.
pub(super) async fn unfinished(inner: &Inner) -> Result<Vec<Unfinished>> {
    let mut out = Vec::new();
    let prefix = match inner.url.prefix.is_empty() {
        true => String::new(),
        false => format!("{}/", inner.url.prefix),
    };
    let mut markers: Option<(String, String)> = None;
    loop {
        let mut query = vec![
            ("uploads".to_string(), String::new()),
            ("prefix".to_string(), prefix.clone()),
        ];
        if let Some((key, upload)) = &markers {
            query.push(("key-marker".into(), key.clone()));
            query.push(("upload-id-marker".into(), upload.clone()));
        }
        let opts = SignedUrlOptions::new().with_query(query);
        let response = send(inner, "", Method::GET, &Path::from(""), &opts, None).await?;
        // A server that cannot list uploads (s3s-fs) has none to show;
        // the bucket's lifecycle rule is then what removes them.
        if response.status().as_u16() == 501 {
            return Ok(out);
        }
        if !response.status().is_success() {
            return Err(refused(inner, "", response).await);
        }
        let body = response.text().await.map_err(|e| transport(inner, "", e))?;
        let listed: ListUploads = quick_xml::de::from_str(&body).map_err(|e| Error::Corrupt {
            location: inner.location.clone(),
            detail: format!("the S3 server's list of multipart uploads: {e}"),
        })?;
        for upload in listed.uploads {
            if let Some(key) = upload.key.strip_prefix(prefix.as_str()) {
                out.push(Unfinished {
                    name: format!("{key}#{}", upload.upload_id),
                    writer: None,
                });
            }
        }
        match (listed.truncated, listed.next_key, listed.next_upload) {
            (Some(true), Some(key), Some(upload)) => markers = Some((key, upload)),
            _ => return Ok(out),
        }
    }
}

/// Aborts the multipart upload `name` names (`KEY#UPLOAD_ID`); one gone
/// already is not an error.
pub(super) async fn abort_upload(inner: &Inner, name: &str) -> Result<()> {
    let (key, upload) = name
        .rsplit_once('#')
        .ok_or_else(|| Error::InvalidArgument(format!("{name:?} names no upload")))?;
    let key = Key::new(key)?;
    let opts = SignedUrlOptions::new().with_query([("uploadId", upload)]);
    let path = inner.path(key.as_str());
    let response = send(inner, key.as_str(), Method::DELETE, &path, &opts, None).await?;
    match response.status().as_u16() {
        200..=299 | 404 => Ok(()),
        _ => Err(refused(inner, key.as_str(), response).await),
    }
}

async fn send(
    inner: &Inner,
    key: &str,
    method: Method,
    path: &Path,
    opts: &SignedUrlOptions,
    if_match: Option<HeaderValue>,
) -> Result<reqwest::Response> {
    let url = inner
        .client
        .signed_url_opts(method.clone(), path, VALID, opts)
        .await
        .map_err(|e| inner.error(key, e))?;
    let mut request = inner.http.request(method, url.as_str());
    if let Some(value) = if_match {
        request = request.header("if-match", value);
    }
    request.send().await.map_err(|e| transport(inner, key, e))
}

fn transport(inner: &Inner, key: &str, e: reqwest::Error) -> Error {
    crate::repository::objects::io_error(&inner.location, key, std::io::Error::other(e))
}

/// An answer that is neither success nor a failed condition.
async fn refused(inner: &Inner, key: &str, response: reqwest::Response) -> Error {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let detail = format!(
        "HTTP {status}: {}",
        body.chars().take(300).collect::<String>()
    );
    match status.as_u16() {
        401 | 403 => Error::NotPermitted(format!("{} refused {key}: {detail}", inner.location)),
        _ => crate::repository::objects::io_error(
            &inner.location,
            key,
            std::io::Error::other(detail),
        ),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploads {
    #[serde(rename = "Upload", default)]
    uploads: Vec<UploadEntry>,
    #[serde(rename = "IsTruncated")]
    truncated: Option<bool>,
    #[serde(rename = "NextKeyMarker")]
    next_key: Option<String>,
    #[serde(rename = "NextUploadIdMarker")]
    next_upload: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadEntry {
    key: String,
    upload_id: String,
}
