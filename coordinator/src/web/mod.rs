//! The web dashboard: sweeps with their loss curves, runs (attempts, epochs, checkpoints,
//! poems with copied 4-grams highlighted), workers and datasets, in the browser, plus the JSON
//! API behind the pages. Served by the coordinator on its own port (`--http-listen`); read-only
//! (every route is a GET, except the login form).
//!
//! # Endpoints
//! JSON (documented in `/api/v1/openapi.json`): `GET /api/v1/sweeps`, `/api/v1/sweeps/{id}`,
//! `/api/v1/sweeps/{id}/curves`, `/api/v1/runs/{id}`, `/api/v1/workers[?include_stale=true]`,
//! `/api/v1/datasets`. Errors are `{"error": {"status": 404, "message": "no run 7"}}`.
//! Pages: `/` (sweeps), `/sweeps/{id}`, `/runs/{id}`, `/workers`, `/datasets`, `/login`.
//!
//! # Auth
//! With tokens configured, everything but the assets, the OpenAPI file and the login form needs
//! the `client` token: scripts send `Authorization: Bearer <token>`; a browser opens any page
//! once with `?token=<token>` (or submits the login form), which sets an HttpOnly,
//! SameSite=Strict cookie holding the token and redirects to the same address without it, so the
//! token leaves the address bar and history. A missing or unknown token is 401, the `worker`
//! token is 403 (same rules as the gRPC interceptor, which does the comparison). The port serves
//! plain HTTP: put it behind TLS, or keep it on loopback. Like gRPC, a non-loopback
//! `--http-listen` is refused without tokens.
//!
//! # Why server-rendered shells + hand-written JS/SVG, no framework
//! The server sends a small HTML shell per page; one script (`assets/app.js`, ~30 KB unminified, no
//! dependencies, embedded with `include_str!` so a deployment stays one binary and nothing is
//! fetched from a CDN) fetches the page's one JSON document and renders it. The same code path
//! draws the first paint and every live update (the page polls its document every two seconds
//! while visible and re-renders only when it changed; a sweep page fetches its curves again only
//! when a run's progress changed), so there is no second renderer to keep in
//! step and no build step for a front end. The chart is a few hundred lines of SVG: one
//! `<path>` per run and series, hover by nearest point, toggles, log scale and colour by a
//! hyperparameter; 1,000 runs x 200 points (curves are thinned server-side) draw in well under
//! a frame budget per update, which a charting library would not improve on. Polling rather than
//! server-sent events keeps the coordinator stateless (any replica answers) and needs no
//! per-connection task; the price is a few seconds of latency, fine for epochs that take minutes.

pub mod api;
pub mod highlight;
mod pages;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::auth::{Role, Tokens};
use crate::config::CoordinatorConfig;
use crate::error::ServiceError;

/// The cookie a browser keeps the client token in.
pub const COOKIE: &str = "poet_token";

/// State of the HTTP handlers (cheap to clone).
#[derive(Clone)]
pub struct WebState {
    /// Every answer is read from Postgres, so any replica serves any page.
    pub(crate) pool: PgPool,
    /// The same tokens (and the same check) as gRPC.
    pub(crate) tokens: Tokens,
}

impl WebState {
    /// State for `cfg`'s tokens over `pool`.
    pub fn new(pool: PgPool, cfg: &CoordinatorConfig) -> Self {
        WebState {
            pool,
            tokens: Tokens::new(cfg.client_token.clone(), cfg.worker_token.clone()),
        }
    }
}

/// A JSON error answer: `{"error": {"status": 404, "message": "no run 7"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// 404 with `message`.
    pub fn not_found(message: String) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message,
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        // Through tonic's mapping, which logs database and storage failures and hides them.
        let s = tonic::Status::from(e);
        let status = match s.code() {
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
            tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: s.message().to_string(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ServiceError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({"error": {"status": self.status.as_u16(), "message": self.message}});
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// A numeric path id; anything else is a 400 JSON error rather than axum's plain text.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError {
                    status: StatusCode::BAD_REQUEST,
                    message: e.body_text(),
                })?;
        raw.parse().map(Id).map_err(|_| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("'{raw}' is not an id"),
        })
    }
}

/// The token a request presents: its bearer header, else the dashboard cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        return Some(v.to_str().unwrap_or("").to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| format!("Bearer {v}"))
}

/// Whether `authorization` (a full `Bearer …` value, or none) may read; the gRPC check decides.
fn authorize(tokens: &Tokens, authorization: Option<&str>) -> Result<(), ApiError> {
    let mut req = tonic::Request::new(());
    if let Some(a) = authorization {
        let v = a.parse().map_err(|_| ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "malformed authorization".into(),
        })?;
        req.metadata_mut().insert("authorization", v);
    }
    tokens.check(&req, Role::Client).map_err(|s| ApiError {
        status: if s.code() == tonic::Code::PermissionDenied {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        },
        message: match s.code() {
            tonic::Code::PermissionDenied => {
                "this token may not read the dashboard (use the client token)".into()
            }
            _ => s.message().to_string(),
        },
    })
}

async fn api_auth(State(st): State<WebState>, req: Request, next: Next) -> Response {
    match authorize(&st.tokens, presented(req.headers()).as_deref()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn api_fallback() -> ApiError {
    ApiError::not_found("no such endpoint (see /api/v1/openapi.json)".into())
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("assets/openapi.json"),
    )
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.js" => (
            include_str!("assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "style.css" => (include_str!("assets/style.css"), "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The whole HTTP application (pages, API, assets) over `state`.
pub fn router(state: WebState) -> Router {
    let api = Router::new()
        .route("/sweeps", get(api::list_sweeps))
        .route("/sweeps/{id}", get(api::get_sweep))
        .route("/sweeps/{id}/curves", get(api::sweep_curves))
        .route(
            "/sweeps/{id}/{action}",
            axum::routing::post(api::sweep_control),
        )
        .route("/runs/{id}", get(api::get_run))
        .route("/runs/{id}/{action}", axum::routing::post(api::run_control))
        .route("/workers", get(api::list_workers))
        .route("/datasets", get(api::list_datasets))
        .fallback(api_fallback)
        .route_layer(middleware::from_fn_with_state(state.clone(), api_auth))
        .route("/openapi.json", get(openapi));
    Router::new()
        .nest("/api/v1", api)
        .route("/api/{*rest}", get(api_fallback))
        .route("/assets/{name}", get(asset))
        .merge(pages::routes(state.clone()))
        .with_state(state)
}

/// Binds `addr`, refusing a non-loopback address without tokens (the gRPC rule).
pub async fn bind(
    addr: SocketAddr,
    cfg: &CoordinatorConfig,
) -> Result<TcpListener, crate::CoordinatorError> {
    if !addr.ip().is_loopback() && cfg.client_token.is_none() {
        return Err(crate::config::ConfigError(format!(
            "refusing to serve the dashboard on {addr} without tokens: set POET_CLIENT_TOKEN and POET_WORKER_TOKEN, or listen on 127.0.0.1"
        ))
        .into());
    }
    TcpListener::bind(addr)
        .await
        .map_err(|e| crate::CoordinatorError::Transport(format!("http address {addr}: {e}")))
}

/// Serves the dashboard on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: WebState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Ok(a) = listener.local_addr() {
        tracing::info!(addr = %a, auth = state.tokens.enabled(), "dashboard listening");
    }
    if let Err(e) = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(error = %e, "dashboard server stopped");
    }
}
