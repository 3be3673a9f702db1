//! `strata serve`: the Manila share-backup REST API over one engine.
//!
//! The server shares its catalog and repositories with every CLI process
//! on the node: what one starts, the other sees. Requests are answered on
//! a small tokio runtime; catalog work runs on its blocking threads. Long
//! work (backups, restores, deletes) is answered as soon as it has recorded
//! its status, and at most `workers` of it moves data at once (`work`).
//!
//! - [`api`]: microversions, Manila's fault bodies, JSON bodies.
//! - [`auth`]: who calls (`noauth` tokens or a token file).
//! - [`views`]: records as Manila shows them.
//! - `backups`, `shares`: the handlers.

pub mod api;
pub mod auth;
mod backups;
mod listen;
mod shares;
pub mod views;
mod work;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use strata_engine::Engine;

use api::{Fault, Requested, MAX_VERSION, MIN_VERSION};
use auth::{Auth, Identity};
pub use listen::{HEADER_TIMEOUT, MAX_CONNECTIONS};

/// How the server runs.
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Backups, restores and deletes that move data at once.
    pub workers: usize,
    pub auth: Auth,
    /// Where `POST /v2/shares` makes new shares' directories (none: refused).
    pub share_root: Option<PathBuf>,
    /// How long running work may take to finish after SIGTERM.
    pub grace: Duration,
    /// Connections served at once; one more is closed at once.
    pub max_connections: usize,
}

/// Engines kept for callers' projects at most.
const PROJECT_ENGINES: usize = 256;

/// What every handler reaches.
pub(crate) struct State {
    engine: Engine,
    projects: Mutex<HashMap<String, Arc<Engine>>>,
    auth: Auth,
    pool: work::Pool,
    share_root: Option<PathBuf>,
}

/// One request's caller, microversion and engine (acting in the caller's
/// project).
pub(crate) struct Ctx {
    pub who: Identity,
    pub req: Requested,
    pub engine: Arc<Engine>,
    pub state: Arc<State>,
}

impl State {
    /// The engine acting in `project`, made once and kept.
    fn engine_for(&self, project: &str) -> Result<Arc<Engine>, Fault> {
        let mut projects = self
            .projects
            .lock()
            .map_err(|_| Fault::new(StatusCode::INTERNAL_SERVER_ERROR, "engine cache poisoned"))?;
        if let Some(e) = projects.get(project) {
            return Ok(Arc::clone(e));
        }
        let engine = Arc::new(self.engine.for_project(project)?);
        // Engines are cheap to make again: the cache stays small whatever
        // project names callers send.
        if projects.len() >= PROJECT_ENGINES {
            projects.clear();
        }
        projects.insert(project.to_string(), Arc::clone(&engine));
        Ok(engine)
    }
}

/// Authenticates and reads the microversion; a project id in the path must
/// be the caller's.
pub(crate) fn context(
    state: &Arc<State>,
    headers: &HeaderMap,
    path: &HashMap<String, String>,
) -> Result<Ctx, Fault> {
    let req = Requested::from_headers(headers)?;
    let who = state.auth.identify(headers)?;
    if let Some(project) = path.get("project_id") {
        if *project != who.project {
            return Err(Fault::bad_request("Malformed request url"));
        }
    }
    let engine = state.engine_for(&who.project)?;
    Ok(Ctx {
        who,
        req,
        engine,
        state: Arc::clone(state),
    })
}

/// Runs blocking catalog work off the runtime's threads, answering with
/// the version headers of the request.
pub(crate) async fn blocking(
    state: &Arc<State>,
    headers: HeaderMap,
    path: HashMap<String, String>,
    work: impl FnOnce(&Ctx) -> Result<Response, Fault> + Send + 'static,
) -> Response {
    let state = Arc::clone(state);
    let joined = tokio::task::spawn_blocking(move || {
        let ctx = context(&state, &headers, &path);
        let requested = Requested::from_headers(&headers).ok();
        let mut response = match ctx {
            Ok(ctx) => work(&ctx).unwrap_or_else(IntoResponse::into_response),
            Err(f) => f.into_response(),
        };
        if let Some(r) = requested {
            r.stamp(&mut response);
        }
        response
    })
    .await;
    joined.unwrap_or_else(|e| {
        Fault::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("handler failed: {e}"),
        )
        .into_response()
    })
}

/// `GET /`: the versions document (unauthenticated, as Manila's).
async fn versions(request: Request) -> Response {
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let body = json!({
        "versions": [{
            "id": "v2.0",
            "status": "CURRENT",
            "version": MAX_VERSION.to_string(),
            "min_version": MIN_VERSION.to_string(),
            "updated": "2015-08-27T11:33:21Z",
            "links": [
                {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
                {"rel": "self", "href": format!("http://{host}/v2/")},
            ],
            "media-types": [{
                "base": "application/json",
                "type": "application/vnd.openstack.share+json;version=1",
            }],
        }]
    });
    (StatusCode::MULTIPLE_CHOICES, axum::Json(body)).into_response()
}

async fn no_route() -> Response {
    Fault::not_found("The resource could not be found.").into_response()
}

/// The API's routes, the same with and without a project id in the path.
fn router(state: Arc<State>) -> Router {
    let api = Router::new()
        .merge(backups::routes())
        .merge(shares::routes())
        .with_state(Arc::clone(&state));
    Router::new()
        .route("/", get(versions))
        .route("/v2", get(versions))
        .route("/v2/", get(versions))
        .nest("/v2/{project_id}", api.clone())
        .nest("/v2", api)
        .fallback(no_route)
}

/// Serves until SIGTERM or SIGINT, then lets running work finish within the
/// grace period. Cleans up after dead operations first. `ready` gets the
/// address listened on (the port of `:0` is chosen then).
pub fn serve(
    engine: Engine,
    config: ServeConfig,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    serve_until(engine, config, ready, stop_signal())
}

/// [`serve`], stopping when `stop` completes instead of on a signal (a
/// server inside another program: a benchmark, a test).
pub fn serve_until(
    engine: Engine,
    config: ServeConfig,
    ready: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    engine.cleanup(None).map_err(|e| e.to_string())?;
    let state = Arc::new(State {
        engine,
        projects: Mutex::new(HashMap::new()),
        auth: config.auth,
        pool: work::Pool::new(config.workers),
        share_root: config.share_root,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let app = router(Arc::clone(&state));
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        ready(addr);
        listen::accept(listener, app, stop, config.max_connections).await;
        Ok::<(), String>(())
    })?;
    let left = state.pool.shutdown(config.grace);
    if left > 0 {
        eprintln!("{left} operation(s) still running at shutdown: `strata cleanup` finishes them");
    }
    Ok(())
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, only a kill stops the server.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
