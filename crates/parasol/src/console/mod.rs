//! The web console: server-rendered HTML pages at `/` for shopping,
//! launching, watching and tearing down GPUs from a browser.
//!
//! Every page calls the same code as the API: a console handler runs the
//! API handler it stands for (same validation, same store writes) through
//! [`api`], and renders the typed answer or the [`ApiError`] beside the
//! form field it names. Pages work without script; the vendored htmx only
//! refreshes live parts (statuses, costs) in place, when the account's
//! event stream (`/events/stream`, assets/live.js) says they changed.
//!
//! Sign-in trades the API key for a signed, expiring session cookie
//! ([`session`]); every POST is checked for its origin and for the
//! session's CSRF token.

mod api_keys;
mod clusters;
mod events;
mod gpu;
mod instances;
mod keys;
mod layout;
mod members;
mod offers;
mod oidc;
mod session;
mod spend;
mod templates;
mod volumes;
mod webhooks;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::Markup;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub use session::{guard, Session, SessionKey};

use crate::error::ApiError;

crate::http::routes! {
    /// Every console route, listed once; merged into the API router at
    /// `/`. [`ROUTES`] is this table, for checks that walk every page.
    routes, ROUTES, "" {
        "/" => get(home),
        "/login" => get(session::login_page).post(session::login),
        "/logout" => post(session::logout),
        "/oidc/{provider}/start" => get(oidc::start),
        "/oidc/{provider}/callback" => get(oidc::callback),
        "/account/switch" => post(oidc::switch),
        "/assets/htmx.min.js" => get(layout::htmx),
        "/assets/console.css" => get(layout::css),
        "/assets/live.js" => get(layout::live),
        "/assets/console.js" => get(layout::script),
        "/offers" => get(offers::page),
        "/launch" => get(offers::launch_page).post(offers::launch),
        "/instances" => get(instances::list),
        "/instances/rows" => get(instances::rows_page),
        "/instances/delete" => post(instances::bulk_delete),
        "/instances/{id}" => get(instances::page),
        "/instances/{id}/live" => get(instances::live),
        "/instances/{id}/gpu" => get(gpu::page),
        "/instances/{id}/restart" => post(instances::restart),
        "/instances/{id}/rename" => post(instances::rename),
        "/instances/{id}/delete" => post(instances::delete),
        "/clusters" => get(clusters::list),
        "/clusters/new" => get(clusters::launch_page).post(clusters::launch),
        "/clusters/{id}" => get(clusters::page),
        "/clusters/{id}/delete" => post(clusters::delete),
        "/keys" => get(keys::page).post(keys::add),
        "/keys/{id}/default" => post(keys::set_default),
        "/keys/{id}/delete" => post(keys::delete),
        "/api-keys" => get(api_keys::page).post(api_keys::create),
        "/api-keys/personal" => post(api_keys::create_personal),
        "/api-keys/{id}/revoke" => post(api_keys::revoke),
        "/volumes" => get(volumes::page).post(volumes::create),
        "/volumes/{id}/delete" => post(volumes::delete),
        "/templates" => get(templates::page).post(templates::save),
        "/templates/{id}/delete" => post(templates::delete),
        "/webhooks" => get(webhooks::page).post(webhooks::create),
        "/webhooks/{id}" => get(webhooks::detail),
        "/webhooks/{id}/deliveries" => get(webhooks::deliveries),
        "/webhooks/{id}/update" => post(webhooks::update),
        "/webhooks/{id}/test" => post(webhooks::test),
        "/webhooks/{id}/rotate-secret" => post(webhooks::rotate_secret),
        "/webhooks/{id}/delete" => post(webhooks::delete),
        "/members" => get(members::page),
        "/members/invite" => post(members::invite),
        "/members/invites/delete" => post(members::uninvite),
        "/members/{id}/role" => post(members::set_role),
        "/members/{id}/remove" => post(members::remove),
        "/events" => get(events::page),
        "/events/stream" => get(events::stream),
        "/spend" => get(spend::page),
        "/system" => get(events::system),
    }
}

/// The console's Content-Security-Policy: scripts and styles from this
/// site's files only (no inline script, no inline style, no eval), nothing
/// framing a page, and forms posting only here.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// Middleware around every console route (refusals included): the
/// security headers, set here and nowhere else. `X-Frame-Options` repeats
/// `frame-ancestors` for browsers that predate it: a framed page with a
/// Delete button invites clickjacking. HSTS only where the server speaks
/// TLS itself (over plain HTTP it would be ignored, and wrong behind no
/// proxy).
pub async fn security_headers(
    axum::extract::State(app): axum::extract::State<crate::http::AppRef>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut header::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(
            header::HeaderName::from_static(name),
            header::HeaderValue::from_static(value),
        );
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    if app.tls {
        set(h, "strict-transport-security", "max-age=31536000");
    }
    res
}

async fn home(session: Option<Session>) -> Redirect {
    match session {
        Some(_) => Redirect::to("/instances"),
        None => Redirect::to("/login"),
    }
}

/// Runs an API handler and decodes its JSON answer: the console's one way
/// into the API's rules, so a rule lives in one place.
pub async fn api<T: DeserializeOwned>(
    answer: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<T, ApiError> {
    let res = answer.await?;
    let bytes: Bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .map_err(|e| ApiError::internal(format!("reading an API answer: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal(format!("decoding an API answer: {e}")))
}

/// A posted form; one that cannot be read is a page naming the problem
/// (axum's own rejection would be plain text).
pub struct Form<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequest<S> for Form<T> {
    type Rejection = PageError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, PageError> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| Form(v))
            .map_err(|e| {
                PageError(ApiError::invalid(format!(
                    "the form could not be read: {e}"
                )))
            })
    }
}

/// A console page's failure: an HTML page with the message, never JSON.
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        let body = layout::bare(
            &format!("{} {}", e.status.as_u16(), e.code),
            maud::html! {
                div.error-page {
                    h1 { (e.status.as_u16()) " " (e.status.canonical_reason().unwrap_or("")) }
                    p.error { (e.message) }
                    p { a href="/instances" { "Back to your instances" } }
                }
            },
        );
        (e.status, Html(body.into_string())).into_response()
    }
}

/// Result of a console handler.
pub type PageResult = Result<Response, PageError>;

/// A rendered page as a response.
pub fn html(m: Markup) -> Response {
    html_status(StatusCode::OK, m)
}

/// A form answered with its page again, showing the error: 400/409 as the
/// API would answer, so scripts and tests see the failure.
pub fn html_status(status: StatusCode, m: Markup) -> Response {
    // Pages show one account's data: never kept by a shared cache.
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Html(m.into_string()),
    )
        .into_response()
}

/// After a successful POST: see the result (POST-redirect-GET).
pub fn see(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// `NAME=value` lines as the API's env objects.
pub fn parse_envs(text: &str) -> Result<Vec<Value>, ApiError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').ok_or_else(|| {
                ApiError::invalid_field(
                    "envs",
                    format!("each env is NAME=value on its own line; got {l:?}"),
                )
            })?;
            Ok(json!({"name": k.trim(), "value": v}))
        })
        .collect()
}

/// A JSON value as a typed API request, with the API's own parse errors.
pub fn request<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    crate::http::parse_json(v.to_string().as_bytes())
}

/// Formats integer cents as dollars.
pub fn money(cents: i64) -> String {
    parasol_api::dollars(cents)
}
