//! What the client needs around backups: shares (shown, listed, made, made
//! from a backup), their export locations, and the default share type.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State as Shared};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use strata_engine::store::{Share, ShareStatus};
use strata_engine::NewShare;
use strata_format::ShareId;

use crate::api::{body, one_action, read_body, reset_to, Fault};
use crate::backups::{backup_of, callers_share, random_id};
use crate::views::{export_location, share_detail, share_summary};
use crate::{blocking, Ctx, State};

type Params = Path<HashMap<String, String>>;
type Pairs = Query<Vec<(String, String)>>;

pub(crate) fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/shares", get(index).post(create))
        .route("/shares/detail", get(detail))
        .route("/shares/{id}", get(show))
        .route("/shares/{id}/export_locations", get(export_locations))
        .route("/shares/{id}/action", post(action))
        .route("/types/default", get(default_type))
}

/// Where links point: the address the client used.
fn base(h: &HeaderMap) -> String {
    let host = h
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The caller's share `id`; anything else is a 404.
fn share_of(ctx: &Ctx, path: &HashMap<String, String>) -> Result<Share, Fault> {
    let id = path.get("id").map(String::as_str).unwrap_or("");
    callers_share(ctx, id, || {
        Fault::not_found(format!("Share {id} could not be found."))
    })
}

async fn index(s: Shared<Arc<State>>, h: HeaderMap, p: Params, q: Pairs) -> Response {
    let b = base(&h);
    blocking(&s, h, p.0, move |ctx| list(ctx, &q.0, &b, false)).await
}

async fn detail(s: Shared<Arc<State>>, h: HeaderMap, p: Params, q: Pairs) -> Response {
    let b = base(&h);
    blocking(&s, h, p.0, move |ctx| list(ctx, &q.0, &b, true)).await
}

fn list(ctx: &Ctx, query: &[(String, String)], base: &str, full: bool) -> Result<Response, Fault> {
    let mut all = false;
    let mut name = None;
    let mut status = None;
    let mut soft_deleted = false;
    let (mut limit, mut offset) = (usize::MAX, 0usize);
    let number = |k: &str, v: &str| {
        v.parse::<usize>().map_err(|_| {
            Fault::bad_request(format!("{k} must be a non-negative integer, not {v:?}"))
        })
    };
    for (k, v) in query {
        let truthy = !matches!(v.to_lowercase().as_str(), "0" | "false" | "no" | "");
        match k.as_str() {
            "all_tenants" | "all_projects" => all = ctx.who.admin && truthy,
            "name" => name = Some(v.clone()),
            "status" => status = Some(v.clone()),
            // No share is ever soft-deleted here: asked for those, none.
            "is_soft_deleted" => soft_deleted = truthy,
            "limit" => limit = number(k, v)?,
            "offset" => offset = number(k, v)?,
            _ => {}
        }
    }
    let shares = match soft_deleted {
        true => Vec::new(),
        false => ctx.engine.list_shares(all)?,
    };
    let items: Vec<Value> = shares
        .iter()
        .filter(|s| name.as_ref().is_none_or(|n| s.name == *n))
        .filter(|s| status.as_ref().is_none_or(|st| s.status.as_str() == st))
        .skip(offset)
        .take(limit)
        .map(|s| match full {
            true => share_detail(s, &ctx.req, &ctx.who, base),
            false => share_summary(s, base),
        })
        .collect();
    Ok(Json(json!({ "shares": items })).into_response())
}

async fn show(s: Shared<Arc<State>>, h: HeaderMap, p: Params) -> Response {
    let b = base(&h);
    blocking(&s, h, p.0.clone(), move |ctx| {
        let share = share_of(ctx, &p.0)?;
        Ok(Json(json!({ "share": share_detail(&share, &ctx.req, &ctx.who, &b) })).into_response())
    })
    .await
}

async fn export_locations(s: Shared<Arc<State>>, h: HeaderMap, p: Params) -> Response {
    blocking(&s, h, p.0.clone(), move |ctx| {
        let share = share_of(ctx, &p.0)?;
        Ok(Json(json!({ "export_locations": [export_location(&share)] })).into_response())
    })
    .await
}

async fn default_type(s: Shared<Arc<State>>, h: HeaderMap, p: Params) -> Response {
    blocking(&s, h, p.0, |_| {
        let specs = json!({"driver_handles_share_servers": "False", "snapshot_support": "False"});
        Ok(Json(json!({
            "share_type": {
                "id": "default",
                "name": "default",
                "description": null,
                "is_default": true,
                "share_type_access:is_public": true,
                "os-share-type-access:is_public": true,
                "extra_specs": specs,
                "required_extra_specs": {"driver_handles_share_servers": "False"},
            }
        }))
        .into_response())
    })
    .await
}

/// `{"reset_status": {"status": …}}` (`os-reset_status` before 2.7): an
/// administrator's reset of a share's status, as Manila has it.
async fn action(s: Shared<Arc<State>>, h: HeaderMap, p: Params, raw: Body) -> Response {
    let bytes = match read_body(raw).await {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    blocking(&s, h, p.0.clone(), move |ctx| {
        let (name, arg) = one_action(&bytes)?;
        let share = share_of(ctx, &p.0)?;
        if !matches!(name.as_str(), "reset_status" | "os-reset_status") {
            return Err(Fault::bad_request(format!(
                "There is no such action: {name}"
            )));
        }
        let to = reset_to(ctx.who.admin, "share", &arg, |s| ShareStatus::parse(s).ok())?;
        ctx.engine.set_share_status(&share, to)?;
        Ok(StatusCode::ACCEPTED.into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewShareBody {
    share: NewShareFields,
}

/// The fields of `POST /v2/shares` this server acts on; the others Manila
/// takes (networks, types, groups, …) are accepted only empty.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewShareFields {
    share_proto: String,
    size: Option<u64>,
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    backup_id: Option<String>,
    #[serde(default)]
    share_type: Option<String>,
    #[serde(default)]
    availability_zone: Option<String>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    is_public: Option<bool>,
    #[serde(default)]
    snapshot_id: Option<String>,
    #[serde(default)]
    share_network_id: Option<String>,
    #[serde(default)]
    share_group_id: Option<String>,
    #[serde(default)]
    scheduler_hints: Option<Value>,
}

/// `POST /v2/shares`: a new directory under the configured share root; with
/// `backup_id`, made from that backup (`creating` until it is restored).
async fn create(s: Shared<Arc<State>>, h: HeaderMap, p: Params, raw: Body) -> Response {
    let bytes = match read_body(raw).await {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    let b = base(&h);
    blocking(&s, h, p.0, move |ctx| {
        let new: NewShareBody = body(&bytes, "share")?;
        let new = new.share;
        if new.snapshot_id.is_some()
            || new.share_network_id.is_some()
            || new.share_group_id.is_some()
        {
            return Err(Fault::bad_request(
                "shares from snapshots, share networks and share groups are not supported",
            ));
        }
        strata_engine::validate::text("description", new.description.as_deref(), true)?;
        let _ = (&new.share_type, &new.availability_zone);
        let _ = (&new.metadata, &new.is_public, &new.scheduler_hints);
        let root = ctx.state.share_root.as_ref().ok_or_else(|| {
            Fault::bad_request("this server makes no shares: it has no share root configured")
        })?;
        let id = ShareId(random_id()?);
        let name = new.name.unwrap_or_else(|| id.to_string());
        let dir = root.join(id.to_string());
        let share = match &new.backup_id {
            Some(backup) => from_backup(ctx, id, &dir, &name, &new.share_proto, new.size, backup)?,
            None => {
                if new.size.is_none() {
                    return Err(Fault::bad_request("a new share needs a size"));
                }
                std::fs::create_dir(&dir)
                    .map_err(|e| Fault::from(strata_engine::Error::io(&dir, e)))?;
                let made = ctx.engine.create_share(&NewShare {
                    id: Some(id),
                    name: &name,
                    path: &dir,
                    size_gib: new.size,
                    protocol: &new.share_proto,
                });
                if made.is_err() {
                    let _ = std::fs::remove_dir(&dir);
                }
                made?
            }
        };
        let view = share_detail(&share, &ctx.req, &ctx.who, &b);
        Ok((StatusCode::ACCEPTED, Json(json!({ "share": view }))).into_response())
    })
    .await
}

fn from_backup(
    ctx: &Ctx,
    id: ShareId,
    dir: &FsPath,
    name: &str,
    protocol: &str,
    size: Option<u64>,
    backup: &str,
) -> Result<Share, Fault> {
    let backup = backup_of(ctx, backup)?;
    let engine = Arc::clone(&ctx.engine);
    let (dir, owned_name, protocol) = (dir.to_path_buf(), name.to_string(), protocol.to_string());
    ctx.state.pool.start(move |progress| {
        engine
            .create_share_from_backup(
                &NewShare {
                    id: Some(id),
                    name: &owned_name,
                    path: &dir,
                    size_gib: size,
                    protocol: &protocol,
                },
                &backup,
                progress,
            )
            .map(|_| ())
    })?;
    Ok(ctx.engine.store().share(id)?)
}
