//! Who is calling, without Keystone: the `X-Auth-Token` header names a user,
//! a project and roles, either read straight from the token (`noauth`,
//! Manila's own convention: `user:project`) or looked up in a file of
//! opaque tokens.

use std::collections::HashMap;
use std::path::Path;

use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::api::Fault;

/// The caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub project: String,
    /// May reset statuses and list every project's objects.
    pub admin: bool,
}

/// One entry of a token file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    user: String,
    project: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// How tokens are turned into identities.
#[derive(Debug)]
pub enum Auth {
    /// The token is `user:project` (a bare `user` is its own project); the
    /// user `admin` is an administrator.
    NoAuth,
    /// Opaque tokens, each mapped to a user, a project and roles (`admin`
    /// among them makes an administrator).
    Tokens(HashMap<String, Identity>),
}

impl Auth {
    /// Reads a token file: a JSON object mapping each token to
    /// `{"user": …, "project": …, "roles": […]}`.
    pub fn from_file(path: &Path) -> Result<Auth, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("token file {}: {e}", path.display()))?;
        let entries: HashMap<String, TokenEntry> = serde_json::from_str(&text)
            .map_err(|e| format!("token file {}: {e}", path.display()))?;
        let mut tokens = HashMap::new();
        for (token, e) in entries {
            if token.is_empty() || e.user.is_empty() || e.project.is_empty() {
                return Err(format!(
                    "token file {}: tokens, users and projects must not be empty",
                    path.display()
                ));
            }
            let admin = e.roles.iter().any(|r| r == "admin");
            tokens.insert(
                token,
                Identity {
                    user: e.user,
                    project: e.project,
                    admin,
                },
            );
        }
        Ok(Auth::Tokens(tokens))
    }

    /// The caller named by the request's token; 401 without a valid one.
    pub fn identify(&self, headers: &HeaderMap) -> Result<Identity, Fault> {
        let token = headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("Authentication required: no X-Auth-Token"))?;
        match self {
            Auth::NoAuth => {
                let (user, project) = token.split_once(':').unwrap_or((token, token));
                let valid = |s: &str| {
                    !s.is_empty()
                        && s.len() <= 255
                        && s.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                };
                if !valid(user) || !valid(project) {
                    return Err(unauthorized("a noauth token is user:project"));
                }
                Ok(Identity {
                    user: user.to_string(),
                    project: project.to_string(),
                    admin: user == "admin",
                })
            }
            Auth::Tokens(tokens) => tokens
                .get(token)
                .cloned()
                .ok_or_else(|| unauthorized("The request you have made requires authentication.")),
        }
    }
}

fn unauthorized(message: &str) -> Fault {
    Fault::new(StatusCode::UNAUTHORIZED, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_token(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(t) {
            h.insert("x-auth-token", v);
        }
        h
    }

    #[test]
    fn noauth_reads_user_and_project() {
        let id = Auth::NoAuth.identify(&with_token("demo:proj")).ok();
        assert_eq!(
            id,
            Some(Identity {
                user: "demo".into(),
                project: "proj".into(),
                admin: false
            })
        );
        let admin = Auth::NoAuth.identify(&with_token("admin:proj")).ok();
        assert!(admin.is_some_and(|a| a.admin));
        let bare = Auth::NoAuth.identify(&with_token("alice")).ok();
        assert!(bare.is_some_and(|a| a.project == "alice"));
        for bad in ["", ":", "a:", ":b", "a:b:c", "a b:c"] {
            let e = Auth::NoAuth
                .identify(&with_token(bad))
                .err()
                .map(|f| f.code);
            assert_eq!(e, Some(StatusCode::UNAUTHORIZED), "{bad:?}");
        }
        let none = Auth::NoAuth
            .identify(&HeaderMap::new())
            .err()
            .map(|f| f.code);
        assert_eq!(none, Some(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn token_files_map_opaque_tokens() {
        let dir = std::env::temp_dir().join(format!("strata-tokens-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("tokens.json");
        let written = std::fs::write(
            &file,
            r#"{"s3cr3t": {"user": "op", "project": "ops", "roles": ["admin"]},
                "t2": {"user": "u", "project": "p"}}"#,
        );
        assert!(written.is_ok());
        let auth = Auth::from_file(&file);
        assert!(auth.is_ok(), "{auth:?}");
        let Ok(auth) = auth else { return };
        assert!(auth.identify(&with_token("s3cr3t")).is_ok_and(|i| i.admin));
        assert!(auth
            .identify(&with_token("t2"))
            .is_ok_and(|i| !i.admin && i.project == "p"));
        assert!(auth.identify(&with_token("op:ops")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
