//! The web dashboard: sweeps with their loss curves, runs (attempts, epochs, checkpoints,
//! poems with copied 4-grams highlighted), workers and datasets, in the browser, plus the JSON
//! API behind the pages. Served by the coordinator on its own port (`--http-listen`); read-only
//! (every route is a GET, except the login form).
//!
//! # Endpoints
//! JSON (documented in `/api/v1/openapi.json`): `GET /api/v1/sweeps`, `/api/v1/sweeps/{id}`,
//! `/api/v1/sweeps/{id}/curves`, `/api/v1/runs[?filter=&order_by=&page_size=&page_token=]`,
//! `/api/v1/runs/{id}`, `/api/v1/workers[?include_stale=true]`,
//! `/api/v1/datasets`. Errors are `{"error": {"status": 404, "message": "no run 7"}}`.
//! Pages: `/` (sweeps), `/sweeps/{id}`, `/runs` (every run of every sweep: filtered, ordered
//! and paged by the server), `/runs/{id}`, `/compare?runs=1,2,3`, `/workers`, `/datasets`,
//! `/login`. A page keeps its view (sort, colour, hidden runs, scale, x axis, smoothing,
//! filter, brushes, page, ...) in its query string, so an address shares a view and a reload
//! keeps it.
//!
//! # Auth
//! With tokens configured, everything but the assets, the OpenAPI file and the login form needs
//! a token (SECURITY.md, findings 4, 10, 13). Scripts send `Authorization: Bearer <token>`: a
//! `viewer`, or the `client` role, may GET; the control POSTs need the `client` role. A browser
//! signs in once with the login form (a `client` or `viewer` token) and gets an opaque session
//! cookie: HttpOnly, SameSite=Strict, 12 hours, a signed *viewer* grant that holds no token, so
//! a cookie can never drive the control POSTs. Behind TLS (`X-Forwarded-Proto: https`) the
//! cookie is `Secure` and named with the `__Host-` prefix. `?token=` in an address is refused
//! (it would land in proxy logs and history). A missing or unknown token is 401, a token of the
//! wrong role 403. The port serves plain HTTP: put it behind TLS, or keep it on loopback. Like
//! gRPC, a non-loopback `--http-listen` is refused without tokens, and without tokens (loopback)
//! a request whose `Host` is not a loopback name is refused, which closes DNS rebinding.
//!
//! # Why server-rendered shells + hand-written JS/SVG, no framework
//! The server sends a small HTML shell per page; one script (`assets/app.js`, ~90 KB unminified, no
//! dependencies, embedded with `include_str!` so a deployment stays one binary and nothing is
//! fetched from a CDN) fetches the page's one JSON document and renders it. The same code path
//! draws the first paint and every live update (the page polls its document every two seconds
//! while visible and re-renders only when it changed; a sweep page fetches its curves again only
//! when a run's progress changed), so there is no second renderer to keep in
//! step and no build step for a front end. The charts (loss curves, per-epoch metrics,
//! parallel coordinates, scatter) are hand-written SVG in pixel coordinates: each measures its
//! box, draws at exactly that size (so text and markers are never stretched) and draws again
//! when a ResizeObserver sees the width change. One `<path>` per run and series, hover by
//! nearest point, drag-to-zoom, EMA smoothing, log scale and colour by a hyperparameter. A
//! log-scale click on a 1,000-run x 50-epoch sweep redraws in 0.27 s in headless Chromium on a
//! loaded 2-core VM (the `a_thousand_run_sweep_draws_quickly` browser test prints it; the run
//! table and the hyperparameter plots are rebuilt only when their inputs change, else they
//! were 1.5 s of it), which a charting library would not improve on enough to be worth
//! vendoring. State that a re-render must keep (an open `<details>`, the tooltip under the
//! pointer, zoom, brushes) lives outside the DOM that is rebuilt; the view's choices live in
//! the query string. Polling rather than
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

use crate::auth::{Caller, Role, Tokens};
use crate::config::CoordinatorConfig;
use crate::error::ServiceError;

/// The cookie a browser keeps its dashboard session in (plain HTTP).
pub const COOKIE: &str = "poet_session";

/// The same cookie behind TLS: `__Host-` makes the browser insist on `Secure`, `Path=/` and
/// no `Domain`, so another host cannot plant it.
pub const SECURE_COOKIE: &str = "__Host-poet_session";

/// State of the HTTP handlers (cheap to clone).
#[derive(Clone)]
pub struct WebState {
    /// Every answer is read from Postgres, so any replica serves any page.
    pub(crate) pool: PgPool,
    /// The same tokens (and the same check) as gRPC.
    pub(crate) tokens: Tokens,
}

impl WebState {
    /// State for `tokens` (the coordinator's, issued tokens included) over `pool`.
    pub fn new(pool: PgPool, tokens: Tokens) -> Self {
        WebState { pool, tokens }
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
        // One mapping for every web answer: `ServiceError::http_status`, details logged.
        ApiError::service(e)
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

/// What a request presents: its bearer header, else its dashboard session cookie.
enum Presented {
    Bearer(String),
    Session(String),
    Nothing,
}

fn presented(headers: &HeaderMap) -> Presented {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        return Presented::Bearer(v.to_str().unwrap_or("").to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE || *k == SECURE_COOKIE)
        .map_or(Presented::Nothing, |(_, v)| {
            Presented::Session(v.to_string())
        })
}

/// Whether the request's credentials allow `needed`; the gRPC rules decide.
fn authorize(tokens: &Tokens, headers: &HeaderMap, needed: Role) -> Result<Caller, ApiError> {
    let checked = match presented(headers) {
        Presented::Bearer(b) => tokens.authorize(Some(&b), needed),
        Presented::Session(s) if tokens.enabled() => tokens.check_session(&s).and_then(|viewer| {
            if needed == Role::Viewer {
                Ok(viewer)
            } else {
                Err(tonic::Status::permission_denied(
                    "a dashboard session is read-only: send the client token as a bearer header",
                ))
            }
        }),
        _ => tokens.authorize(None, needed),
    };
    checked.map_err(|s| ApiError {
        status: if s.code() == tonic::Code::PermissionDenied {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        },
        message: s.message().to_string(),
    })
}

/// Whether the request arrived over TLS at a proxy in front of us.
fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value of a new session for `caller`.
fn session_cookie(tokens: &Tokens, caller: &Caller, headers: &HeaderMap) -> Option<String> {
    let value = tokens.session_cookie(caller)?;
    let max_age = crate::auth::SESSION_TTL.as_secs();
    Some(if behind_tls(headers) {
        format!(
            "{SECURE_COOKIE}={value}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"
        )
    } else {
        format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}")
    })
}

async fn api_auth(State(st): State<WebState>, req: Request, next: Next) -> Response {
    let needed = if req.method() == axum::http::Method::GET {
        Role::Viewer
    } else {
        Role::Client
    };
    match authorize(&st.tokens, req.headers(), needed) {
        Ok(caller) => {
            // Handlers that store who did something (tags, notes) read it from here.
            let mut req = req;
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Without tokens the dashboard is for this machine only: a `Host` other than a loopback name
/// means a page elsewhere resolved its own name to 127.0.0.1 (DNS rebinding), so refuse it.
async fn loopback_host(State(st): State<WebState>, req: Request, next: Next) -> Response {
    if st.tokens.enabled() {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    if is_loopback_host(host) {
        next.run(req).await
    } else {
        ApiError {
            status: StatusCode::MISDIRECTED_REQUEST,
            message: "this dashboard serves loopback names only (localhost, 127.0.0.1, [::1]); set tokens to serve other hosts".into(),
        }
        .into_response()
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or("", |(n, _)| n)
    } else {
        host.rsplit_once(':').map_or(host, |(n, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                n
            } else {
                host
            }
        })
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
        "quality.js" => (
            include_str!("assets/quality.js"),
            "text/javascript; charset=utf-8",
        ),
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
        .route("/runs", get(api::list_runs))
        .route("/runs/export", get(api::export_runs))
        .route("/runs/{id}", get(api::get_run))
        .route(
            "/runs/{id}/tags",
            axum::routing::post(api::tag_run).delete(api::untag_run),
        )
        .route("/runs/{id}/notes", axum::routing::post(api::note_run))
        .route(
            "/sweeps/{id}/tags",
            axum::routing::post(api::tag_sweep).delete(api::untag_sweep),
        )
        .route("/sweeps/{id}/notes", axum::routing::post(api::note_sweep))
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
        .layer(middleware::from_fn_with_state(state.clone(), loopback_host))
        .with_state(state)
}

/// Binds `addr`, refusing a non-loopback address without tokens (the gRPC rule).
pub async fn bind(
    addr: SocketAddr,
    cfg: &CoordinatorConfig,
) -> Result<TcpListener, crate::CoordinatorError> {
    check_address(addr, cfg)?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| crate::CoordinatorError::Transport(format!("http address {addr}: {e}")))
}

/// Refuses a dashboard address that is not loopback when tokens are off.
pub fn check_address(
    addr: SocketAddr,
    cfg: &CoordinatorConfig,
) -> Result<(), crate::CoordinatorError> {
    if !addr.ip().is_loopback() && cfg.client_token.is_none() {
        return Err(crate::config::ConfigError(format!(
            "refusing to serve the dashboard on {addr} without tokens: set POET_CLIENT_TOKEN and POET_WORKER_TOKEN, or listen on 127.0.0.1"
        ))
        .into());
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]:9",
            "[::1]",
            "LOCALHOST",
        ] {
            assert!(super::is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:80",
            "localhost.evil.example",
            "10.0.0.1:80",
            "",
            "[::2]:80",
        ] {
            assert!(!super::is_loopback_host(h), "{h}");
        }
    }
}
