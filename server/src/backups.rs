//! `/v2/share-backups`: Manila's share-backup API (`api/v2/share_backups.py`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State as Shared};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use strata_engine::store::{BackupFilter, BackupRecord, BackupStatus, Share};
use strata_engine::store::{BackupQuery, BackupSort};
use strata_engine::{CreateBackup, RestoreRequest, RestoreTarget};
use strata_format::{BackupId, ShareId};

use crate::api::{body, one_action, read_body, reset_to, Fault, BACKUPS, TARGET_RESTORE};
use crate::views::{backup_detail, backup_summary};
use crate::{blocking, Ctx, State};

type Params = Path<HashMap<String, String>>;
type Pairs = Query<Vec<(String, String)>>;

pub(crate) fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/share-backups", get(index).post(create))
        .route("/share-backups/detail", get(detail))
        .route("/share-backups/{id}", get(show).put(update).delete(remove))
        .route("/share-backups/{id}/action", post(action))
}

fn id_of(path: &HashMap<String, String>) -> Result<String, Fault> {
    path.get("id")
        .cloned()
        .ok_or_else(|| Fault::bad_request("no backup id in the path"))
}

/// The caller's backup `id` (an administrator reaches every project's);
/// anything else is a 404, as Manila answers.
pub(crate) fn backup_of(ctx: &Ctx, id: &str) -> Result<BackupRecord, Fault> {
    let missing = || Fault::not_found(format!("No backup exists with ID {id}."));
    let parsed: BackupId = id.parse().map_err(|_| missing())?;
    match ctx.engine.visible_backup(parsed, ctx.who.admin) {
        Ok(b) => Ok(b),
        Err(strata_engine::Error::NotFound { .. }) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

/// The caller's share `id`, for a request naming it in a body: a 400 when
/// it is not there (Manila's "No share exists with ID").
pub(crate) fn share_in_body(ctx: &Ctx, id: &str) -> Result<Share, Fault> {
    callers_share(ctx, id, || {
        Fault::bad_request(format!("No share exists with ID {id}."))
    })
}

/// The caller's share `id` (an administrator reaches every project's);
/// `missing` answers for anything else.
pub(crate) fn callers_share(
    ctx: &Ctx,
    id: &str,
    missing: impl Fn() -> Fault,
) -> Result<Share, Fault> {
    let parsed: ShareId = id.parse().map_err(|_| missing())?;
    match ctx.engine.visible_share(parsed, ctx.who.admin) {
        Ok(s) => Ok(s),
        Err(strata_engine::Error::NotFound { .. }) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

async fn index(s: Shared<Arc<State>>, h: HeaderMap, p: Params, q: Pairs) -> Response {
    blocking(&s, h, p.0, move |ctx| list(ctx, &q.0, false)).await
}

async fn detail(s: Shared<Arc<State>>, h: HeaderMap, p: Params, q: Pairs) -> Response {
    blocking(&s, h, p.0, move |ctx| list(ctx, &q.0, true)).await
}

/// The query a list's parameters make (Manila's names; unknown ones are
/// dropped, as Manila drops them).
fn query<'a>(ctx: &'a Ctx, params: &'a [(String, String)]) -> Result<BackupQuery<'a>, Fault> {
    let mut q = BackupQuery {
        filter: BackupFilter {
            project: Some(ctx.who.project.as_str()),
            ..BackupFilter::default()
        },
        ..BackupQuery::default()
    };
    let number = |k: &str, v: &str| {
        v.parse::<u64>().map_err(|_| {
            Fault::bad_request(format!("{k} must be a non-negative integer, not {v:?}"))
        })
    };
    for (k, v) in params {
        match k.as_str() {
            "share_id" => q.filter.share_id = Some(share_in_body(ctx, v)?.id),
            "name" => q.filter.name = Some(v),
            "name~" => q.name_contains = Some(v),
            "description" => q.description = Some(v),
            "description~" => q.description_contains = Some(v),
            "status" => {
                q.filter.status = Some(
                    BackupStatus::parse(v)
                        .map_err(|_| Fault::bad_request(format!("invalid status {v:?}")))?,
                )
            }
            "limit" => q.limit = Some(number(k, v)?),
            "offset" => q.offset = number(k, v)?,
            "sort_key" => {
                q.sort = BackupSort::parse(v).ok_or_else(|| {
                    Fault::bad_request(format!("Wrong sort_key filter provided: '{v}'."))
                })?
            }
            "sort_dir" => {
                q.ascending = match v.as_str() {
                    "asc" => true,
                    "desc" => false,
                    _ => {
                        return Err(Fault::bad_request(format!(
                            "Wrong sort_dir filter provided: '{v}'."
                        )))
                    }
                }
            }
            // Every project's only for those allowed; the others silently
            // keep to their own, as Manila does.
            "all_tenants" | "all_projects"
                if ctx.who.admin && !matches!(v.as_str(), "0" | "false" | "False") =>
            {
                q.filter.project = None;
            }
            _ => {}
        }
    }
    Ok(q)
}

#[derive(serde::Serialize)]
struct Page<T> {
    share_backups: Vec<T>,
}

fn list(ctx: &Ctx, params: &[(String, String)], is_detail: bool) -> Result<Response, Fault> {
    ctx.req.require(BACKUPS, true)?;
    let q = query(ctx, params)?;
    let backups = ctx.engine.store().list_backups_page(&q)?;
    Ok(match is_detail {
        true => {
            let items: Vec<_> = backups
                .iter()
                .map(|b| backup_detail(b, &ctx.req, &ctx.who))
                .collect();
            // Serialized straight into the body, without a value tree.
            Json(Page {
                share_backups: items,
            })
            .into_response()
        }
        false => {
            let items: Vec<Value> = backups.iter().map(backup_summary).collect();
            Json(json!({ "share_backups": items })).into_response()
        }
    })
}

async fn show(s: Shared<Arc<State>>, h: HeaderMap, p: Params) -> Response {
    blocking(&s, h, p.0.clone(), move |ctx| {
        ctx.req.require(BACKUPS, true)?;
        let b = backup_of(ctx, &id_of(&p.0)?)?;
        Ok(Json(json!({ "share_backup": backup_detail(&b, &ctx.req, &ctx.who) })).into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBackupBody {
    share_backup: NewBackup,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBackup {
    share_id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    backup_options: Option<HashMap<String, Value>>,
}

async fn create(s: Shared<Arc<State>>, h: HeaderMap, p: Params, raw: Body) -> Response {
    let bytes = match read_body(raw).await {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    blocking(&s, h, p.0, move |ctx| {
        ctx.req.require(BACKUPS, true)?;
        let new: NewBackupBody = body(&bytes, "share_backup")?;
        let new = new.share_backup;
        let share_id = new
            .share_id
            .ok_or_else(|| Fault::bad_request("'share_id' is missing from the request body."))?;
        let share = share_in_body(ctx, &share_id)?;
        let mut pairs = Vec::new();
        for (k, v) in new.backup_options.iter().flatten() {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(Fault::bad_request(format!(
                        "backup option {k}={other} is neither a string nor a boolean"
                    )))
                }
            };
            pairs.push((k.clone(), value));
        }
        let options = strata_engine::validate::backup_options(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        let (backup_type, incremental) = (options.backup_type, options.incremental);
        let engine = Arc::clone(&ctx.engine);
        if let Some(t) = &backup_type {
            engine.backup_type(t)?;
        }
        let id = BackupId(random_id()?);
        // Unsaid, incremental when the share has a backup of this type to
        // build on: the engine decides as it admits the backup.
        let req = CreateBackup {
            id: Some(id),
            name: new.name,
            description: new.description,
            incremental: incremental.unwrap_or(false),
            incremental_if_possible: incremental.is_none(),
            backup_type,
            ..CreateBackup::default()
        };
        let work_engine = Arc::clone(&engine);
        ctx.state.pool.start(move |progress| {
            work_engine
                .create_backup(&share, &req, progress)
                .map(|_| ())
        })?;
        let b = engine.store().backup(id)?;
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "share_backup": backup_detail(&b, &ctx.req, &ctx.who) })),
        )
            .into_response())
    })
    .await
}

pub(crate) fn random_id() -> Result<[u8; 16], Fault> {
    strata_engine::repository::new_uuid().map_err(Fault::from)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    share_backup: Update,
}

/// A field absent stays as it is; `null` clears it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
}

/// `Some(None)` for an explicit `null`, `Some(Some(s))` for a string.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// What the store takes: `None` keeps, `""` clears.
fn change(field: &Option<Option<String>>) -> Option<&str> {
    field.as_ref().map(|v| v.as_deref().unwrap_or(""))
}

async fn update(s: Shared<Arc<State>>, h: HeaderMap, p: Params, raw: Body) -> Response {
    let bytes = match read_body(raw).await {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    blocking(&s, h, p.0.clone(), move |ctx| {
        ctx.req.require(BACKUPS, true)?;
        let changes: UpdateBody = body(&bytes, "share_backup")?;
        let b = backup_of(ctx, &id_of(&p.0)?)?;
        let u = changes.share_backup;
        ctx.engine
            .rename_backup(&b, change(&u.name), change(&u.description))?;
        let b = ctx.engine.store().backup(b.id)?;
        Ok(Json(json!({ "share_backup": backup_detail(&b, &ctx.req, &ctx.who) })).into_response())
    })
    .await
}

async fn remove(s: Shared<Arc<State>>, h: HeaderMap, p: Params) -> Response {
    blocking(&s, h, p.0.clone(), move |ctx| {
        ctx.req.require(BACKUPS, true)?;
        let b = backup_of(ctx, &id_of(&p.0)?)?;
        ctx.engine.check_deletable(&b, false)?;
        let engine = Arc::clone(&ctx.engine);
        ctx.state
            .pool
            .start(move |progress| engine.delete_backup_reporting(&b, false, progress))?;
        Ok(StatusCode::ACCEPTED.into_response())
    })
    .await
}

/// `{"restore": null | "<share id>"}` or `{"reset_status": {"status": …}}`.
async fn action(s: Shared<Arc<State>>, h: HeaderMap, p: Params, raw: Body) -> Response {
    let bytes = match read_body(raw).await {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    blocking(&s, h, p.0.clone(), move |ctx| {
        ctx.req.require(BACKUPS, true)?;
        let (name, arg) = one_action(&bytes)?;
        let b = backup_of(ctx, &id_of(&p.0)?)?;
        match name.as_str() {
            "restore" => restore(ctx, b, &arg),
            "reset_status" => reset_status(ctx, b, &arg),
            other => Err(Fault::bad_request(format!(
                "There is no such action: {other}"
            ))),
        }
    })
    .await
}

fn restore(ctx: &Ctx, b: BackupRecord, arg: &Value) -> Result<Response, Fault> {
    // Before 2.91 the body is ignored: the source share is restored.
    let target = match (arg, ctx.req.version >= TARGET_RESTORE) {
        (Value::String(id), true) => {
            let parsed: ShareId = id
                .parse()
                .map_err(|_| Fault::not_found(format!("No share exists with ID {id}.")))?;
            Some(parsed)
        }
        (Value::Null, _) | (_, false) => None,
        (other, true) => {
            return Err(Fault::bad_request(format!(
                "restore takes a target share id or null, not {other}"
            )))
        }
    };
    let share_id = target.unwrap_or(b.share_id);
    let req = RestoreRequest::whole(match target {
        Some(id) => RestoreTarget::Share(id.to_string()),
        None => RestoreTarget::Source,
    });
    let backup_id = b.id.to_string();
    let engine = Arc::clone(&ctx.engine);
    ctx.state
        .pool
        .start(move |progress| engine.restore_backup(&b, &req, progress).map(|_| ()))?;
    let body = json!({"restore": {"backup_id": backup_id, "share_id": share_id.to_string()}});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

fn reset_status(ctx: &Ctx, b: BackupRecord, arg: &Value) -> Result<Response, Fault> {
    let to = reset_to(ctx.who.admin, "share_backup", arg, |s| {
        BackupStatus::parse(s).ok()
    })?;
    ctx.engine.reset_backup_state(&b, to)?;
    Ok(StatusCode::ACCEPTED.into_response())
}
