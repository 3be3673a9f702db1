//! What every request shares: microversions, faults as Manila writes them,
//! and the JSON body reader.

use std::fmt;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// `X-OpenStack-Manila-API-Version`.
pub const VERSION_HEADER: &str = "x-openstack-manila-api-version";
/// `X-OpenStack-Manila-API-Experimental`.
pub const EXPERIMENTAL_HEADER: &str = "x-openstack-manila-api-experimental";

/// A microversion `2.N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

pub const MIN_VERSION: Version = Version(2, 0);
pub const MAX_VERSION: Version = Version(2, 91);
/// Share backups exist from 2.80 (experimental).
pub const BACKUPS: Version = Version(2, 80);
/// `backup_type` in the backup view.
pub const BACKUP_TYPE: Version = Version(2, 85);
/// Restore into a share other than the source.
pub const TARGET_RESTORE: Version = Version(2, 91);

impl Version {
    /// `2.N`, or `latest`.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("latest") {
            return Some(MAX_VERSION);
        }
        let (major, minor) = s.split_once('.')?;
        let ok = |p: &str| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit());
        if !ok(major) || !ok(minor) {
            return None;
        }
        Some(Version(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The microversion a request asked for, and whether it accepts
/// experimental APIs.
#[derive(Clone, Copy, Debug)]
pub struct Requested {
    pub version: Version,
    pub experimental: bool,
}

impl Requested {
    /// From the headers: no version header means 2.0; one outside the
    /// supported range is a 406.
    pub fn from_headers(headers: &HeaderMap) -> Result<Requested, Fault> {
        let version = match headers.get(VERSION_HEADER) {
            None => MIN_VERSION,
            Some(v) => {
                let text = v.to_str().unwrap_or("");
                let parsed = Version::parse(text).ok_or_else(|| {
                    Fault::bad_request(format!("Invalid API version request string {text:?}."))
                })?;
                if parsed < MIN_VERSION || parsed > MAX_VERSION {
                    return Err(Fault::new(
                        StatusCode::NOT_ACCEPTABLE,
                        format!(
                            "Version {parsed} is not supported by the API. Minimum is \
                             {MIN_VERSION} and maximum is {MAX_VERSION}."
                        ),
                    ));
                }
                parsed
            }
        };
        let experimental = headers
            .get(EXPERIMENTAL_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes" | "on" | "y" | "t"
                )
            });
        Ok(Requested {
            version,
            experimental,
        })
    }

    /// Whether a method available from `min` (experimental or not) serves
    /// this request; Manila answers a plain 404 when it does not.
    pub fn require(&self, min: Version, experimental: bool) -> Result<(), Fault> {
        if self.version < min || (experimental && !self.experimental) {
            return Err(Fault::not_found("The resource could not be found."));
        }
        Ok(())
    }

    /// Adds the version headers Manila puts on every versioned answer.
    pub fn stamp(&self, response: &mut Response) {
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.version.to_string()) {
            headers.insert(VERSION_HEADER, v);
        }
        if self.experimental {
            headers.insert(EXPERIMENTAL_HEADER, HeaderValue::from_static("True"));
        }
        headers.insert("vary", HeaderValue::from_static(VERSION_HEADER));
    }
}

/// An error answer: `{"<faultName>": {"code": N, "message": "..."}}`.
#[derive(Debug)]
pub struct Fault {
    pub code: StatusCode,
    pub message: String,
}

impl Fault {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Fault {
        Fault {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Fault {
        Fault::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Fault {
        Fault::new(StatusCode::NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Fault {
        Fault::new(StatusCode::FORBIDDEN, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Fault {
        Fault::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// Manila's name for the fault of each status.
    fn name(&self) -> &'static str {
        match self.code.as_u16() {
            400 => "badRequest",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "itemNotFound",
            405 => "badMethod",
            409 => "conflictingRequest",
            413 => "overLimit",
            415 => "badMediaType",
            501 => "notImplemented",
            503 => "serviceUnavailable",
            _ => "computeFault",
        }
    }

    /// The engine's error as the API answers it.
    pub fn from_engine(e: strata_engine::Error) -> Fault {
        use strata_engine::Error as E;
        let code = match &e {
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::InvalidArgument(_) | E::InvalidState(_) | E::Unsupported(_) => {
                StatusCode::BAD_REQUEST
            }
            E::Busy(_) | E::Precondition { .. } => StatusCode::CONFLICT,
            E::NotPermitted(_) => StatusCode::FORBIDDEN,
            E::Quota(_) => StatusCode::PAYLOAD_TOO_LARGE,
            E::NoSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
            E::Cancelled => StatusCode::CONFLICT,
            E::Corrupt { .. } | E::Io { .. } | E::Catalog(_) | E::Bug(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Fault::new(code, e.to_string())
    }
}

impl From<strata_engine::Error> for Fault {
    fn from(e: strata_engine::Error) -> Fault {
        Fault::from_engine(e)
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code.as_u16(), "message": self.message });
        if self.code == StatusCode::PAYLOAD_TOO_LARGE {
            body["retryAfter"] = json!("0");
        }
        let name = self.name();
        (self.code, axum::Json(json!({ name: body }))).into_response()
    }
}

/// The most a request body may hold.
pub const MAX_BODY: usize = 64 * 1024;

/// Reads a request body of at most [`MAX_BODY`] bytes; a larger one is a
/// 413 with Manila's fault body.
pub async fn read_body(body: axum::body::Body) -> Result<axum::body::Bytes, Fault> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(Fault::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than {MAX_BODY} bytes."),
        )),
        Err(_) => Err(Fault::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "Request body not received within {} s.",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Decodes a JSON body into `T`: malformed JSON, a wrong type or an unknown
/// field is a 400 naming what is wrong; an empty body is a 422 (Manila's
/// answer to a body without the resource).
pub fn body<T: DeserializeOwned>(bytes: &[u8], resource: &str) -> Result<T, Fault> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Fault::unprocessable(format!(
            "Body does not contain '{resource}' information."
        )));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Fault::bad_request(format!("Malformed request body: {e}")))?;
    if !value.is_object() {
        return Err(Fault::bad_request(
            "Malformed request body: not a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|e| Fault::bad_request(format!("Invalid request: {e}")))
}

/// The one action an action body (`POST …/action`) names, and its argument.
pub fn one_action(bytes: &[u8]) -> Result<(String, Value), Fault> {
    let action: serde_json::Map<String, Value> = body(bytes, "action")?;
    let mut entries = action.into_iter();
    match (entries.next(), entries.next()) {
        (Some(pair), None) => Ok(pair),
        _ => Err(Fault::bad_request(
            "An action body names exactly one action.",
        )),
    }
}

/// The status a `reset_status` action asks for, parsed by `parse`; only an
/// administrator may reset (`what` names the policy, as Manila does).
pub fn reset_to<S>(
    admin: bool,
    what: &str,
    arg: &Value,
    parse: impl Fn(&str) -> Option<S>,
) -> Result<S, Fault> {
    if !admin {
        return Err(Fault::forbidden(format!(
            "Policy doesn't allow {what}:reset_status to be performed."
        )));
    }
    let status = arg
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| Fault::bad_request("Must specify 'status'"))?;
    parse(status).ok_or_else(|| Fault::bad_request(format!("Invalid status provided: {status}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(Version::parse("2.91"), Some(Version(2, 91)));
        assert_eq!(Version::parse("latest"), Some(MAX_VERSION));
        assert!(Version(2, 9) < Version(2, 80));
        for bad in ["", "2", "2.", ".1", "a.b", "2.1.1", "99999.1", "-2.1"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn versions_outside_the_range_are_406() {
        let mut h = HeaderMap::new();
        h.insert(VERSION_HEADER, HeaderValue::from_static("2.92"));
        let e = Requested::from_headers(&h).err().map(|f| f.code);
        assert_eq!(e, Some(StatusCode::NOT_ACCEPTABLE));
        h.insert(VERSION_HEADER, HeaderValue::from_static("1.0"));
        let e = Requested::from_headers(&h).err().map(|f| f.code);
        assert_eq!(e, Some(StatusCode::NOT_ACCEPTABLE));
        h.insert(VERSION_HEADER, HeaderValue::from_static("2.80"));
        h.insert(EXPERIMENTAL_HEADER, HeaderValue::from_static("True"));
        let r = Requested::from_headers(&h).ok();
        assert!(r.is_some_and(|r| r.experimental && r.require(BACKUPS, true).is_ok()));
    }
}
