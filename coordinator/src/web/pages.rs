//! The HTML pages: a shell per page (title, navigation, the page's kind and id for
//! `assets/app.js`) and the login form, which trades a token for a session cookie. Unknown ids answer a
//! 404 page here, so a wrong link never paints an empty dashboard.

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get};
use serde::Deserialize;

use super::{ApiError, Id, WebState, authorize, session_cookie};
use crate::auth::Role;

/// Escapes text for HTML bodies and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn shell(title: &str, page: &str, id: Option<i64>, body: &str) -> String {
    let id = id.map(|i| i.to_string()).unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · poet</title><link rel="stylesheet" href="/assets/style.css"></head>
<body data-page="{page}" data-id="{id}">
<header><a class="brand" href="/">poet</a><nav><a href="/">Sweeps</a><a href="/runs">Runs</a><a href="/workers">Workers</a><a href="/datasets">Datasets</a><a href="/api/v1/openapi.json">API</a></nav><span id="live" title="live updates"></span></header>
<main id="main"><h1>{title}</h1>{body}<noscript><p>This page draws with JavaScript; the same data is at <code>/api/v1</code>.</p></noscript></main>
<script src="/assets/app.js"></script>{extra}</body></html>"#,
        title = esc(title),
        page = page,
        // The run page's quality block (issue 21) lives in its own script.
        extra = if page == "run" {
            r#"<script src="/assets/quality.js"></script>"#
        } else {
            ""
        },
    )
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn login_page(status: StatusCode, next: &str, message: &str) -> Response {
    let body = format!(
        r#"<p class="error">{}</p><form method="post" action="/login" class="login"><input type="hidden" name="next" value="{}">
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus></label> <button>Sign in</button></form>
<p class="muted">A viewer or client token; the browser keeps a read-only session, never the token. Scripts send <code>Authorization: Bearer …</code> to <code>/api/v1</code>.</p>"#,
        esc(message),
        esc(&safe_next(next))
    );
    (status, Html(shell("Sign in", "login", None, &body))).into_response()
}

/// `next` if it is a path on this site, else `/`: never an open redirect. Browsers read `\`
/// as `/`, so `/\evil.example` is `//evil.example`; controls and spaces are refused too.
fn safe_next(next: &str) -> String {
    let on_site = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    if on_site {
        next.to_string()
    } else {
        "/".into()
    }
}

/// `None` lets the page through; otherwise the login page instead.
fn gate(st: &WebState, uri: &Uri, headers: &HeaderMap, token: Option<String>) -> Option<Response> {
    if token.is_some() {
        return Some(login_page(
            StatusCode::BAD_REQUEST,
            uri.path(),
            "a token in the address is not accepted (it lands in logs and history): sign in here",
        ));
    }
    authorize(&st.tokens, headers, Role::Viewer).err().map(|e| {
        let msg = if e.status == StatusCode::FORBIDDEN {
            e.message
        } else {
            "sign in with a viewer or client token".into()
        };
        // Back to the whole address after signing in: a view's state is in its query.
        let next = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        login_page(e.status, next, &msg)
    })
}

/// A table a page can be about.
#[derive(Debug, Clone, Copy)]
enum Table {
    Sweeps,
    Runs,
}

/// A page of `kind`; for one sweep or run (`thing` = table and id), a 404 page when it does
/// not exist.
async fn page(
    st: WebState,
    uri: Uri,
    headers: HeaderMap,
    token: Option<String>,
    title: &str,
    kind: &str,
    thing: Option<(Table, i64)>,
) -> Response {
    if let Some(r) = gate(&st, &uri, &headers, token) {
        return r;
    }
    let Some((table, id)) = thing else {
        return Html(shell(title, kind, None, "")).into_response();
    };
    // A table name cannot be a bind parameter: each table has its own fixed statement.
    let sql = match table {
        Table::Sweeps => "select exists(select 1 from sweeps where id = $1)",
        Table::Runs => "select exists(select 1 from runs where id = $1)",
    };
    let found = sqlx::query_scalar::<_, bool>(sql)
        .bind(id)
        .fetch_one(&st.pool)
        .await;
    match found {
        Ok(true) => Html(shell(title, kind, Some(id), "")).into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Html(shell(
                "Not found",
                "missing",
                None,
                &format!("<p class=\"error\">No {kind} {id}.</p>"),
            )),
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn sweep(
    State(st): State<WebState>,
    Id(id): Id,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    page(
        st,
        uri,
        headers,
        q.token,
        &format!("Sweep {id}"),
        "sweep",
        Some((Table::Sweeps, id)),
    )
    .await
}

async fn run(
    State(st): State<WebState>,
    Id(id): Id,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    page(
        st,
        uri,
        headers,
        q.token,
        &format!("Run {id}"),
        "run",
        Some((Table::Runs, id)),
    )
    .await
}

/// The route of a page about no one row (`kind`, titled `title`): the gate, then its shell;
/// the page reads the rest (filter, order, `runs=1,2,3`, ...) from its own address.
fn plain(title: &'static str, kind: &'static str) -> MethodRouter<WebState> {
    get(
        move |State(st): State<WebState>,
              uri: Uri,
              headers: HeaderMap,
              Query(q): Query<TokenQuery>| async move {
            page(st, uri, headers, q.token, title, kind, None).await
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

async fn login_form() -> Response {
    login_page(StatusCode::OK, "/", "")
}

async fn login(
    State(st): State<WebState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(&f.next);
    match st
        .tokens
        .authorize(Some(&format!("Bearer {}", f.token)), Role::Viewer)
    {
        Ok(caller) => match session_cookie(&st.tokens, &caller, &headers) {
            Some(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response(),
            // Authentication is off: nothing to sign in to.
            None => Redirect::to(&next).into_response(),
        },
        Err(e) if e.code() == tonic::Code::PermissionDenied => {
            login_page(StatusCode::FORBIDDEN, &next, e.message())
        }
        Err(_) => login_page(StatusCode::UNAUTHORIZED, &next, "that token is not valid"),
    }
}

async fn page_fallback() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(shell(
            "Not found",
            "missing",
            None,
            "<p class=\"error\">No such page.</p>",
        )),
    )
        .into_response()
}

/// The page routes.
pub(super) fn routes(_state: WebState) -> Router<WebState> {
    Router::new()
        .route("/", plain("Sweeps", "sweeps"))
        .route("/sweeps/{id}", get(sweep))
        // Every run of every sweep, filtered, ordered and paged by `/api/v1/runs`.
        .route("/runs", plain("Runs", "runs"))
        .route("/runs/{id}", get(run))
        // `/compare?runs=1,2,3`.
        .route("/compare", plain("Compare runs", "compare"))
        .route("/workers", plain("Workers", "workers"))
        .route("/datasets", plain("Datasets", "datasets"))
        .route("/login", get(login_form).post(login))
        .fallback(page_fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn next_stays_on_site() {
        for (next, want) in [
            ("/workers", "/workers"),
            ("/runs/3?x=1", "/runs/3?x=1"),
            ("//evil.example/", "/"),
            ("/\\evil.example", "/"),
            ("\\\\evil.example", "/"),
            ("https://evil.example", "/"),
            ("/\t/evil.example", "/"),
            ("", "/"),
        ] {
            assert_eq!(super::safe_next(next), want, "{next:?}");
        }
    }
}
