//! Sign-in, sessions and cross-site request protection.
//!
//! A session is a token the server signs (HMAC-SHA256) with a key made once
//! per deployment and kept in the `settings` table, so every replica
//! accepts every replica's cookies. The token holds its expiry, a random
//! nonce and the session's random id, whose SHA-256 keys a row of
//! `console_sessions`. Requests read the row (and a person's membership)
//! from each replica's cache, which every change to them empties on every
//! replica before the change answers (crate::auth_sync): signing out
//! deletes the row, so the cookie is dead on every replica from the next
//! request. A
//! session made from an API key keeps that key's hash (never the key), and
//! the account is found by it exactly as an API request finds it, so the
//! session cannot outlive the key; a person's session holds the person and
//! the account they are in, and their role is read from their membership
//! on every request, so a removed membership ends it at once. The CSRF
//! token is derived from the nonce with the same key.
//!
//! Cross-site POSTs are refused three ways: the cookie is SameSite=Strict,
//! a browser's Origin (or Sec-Fetch-Site) must name this site, and every
//! form carries the session's CSRF token (htmx sends it as a header).

use super::Form;
use axum::extract::{FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use rand::Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use super::{html_status, layout, PageResult};
use crate::error::ApiError;
use crate::http::{hash_key, AppRef, CachedSession, BODY_LIMIT};
use crate::store::{Account, Membership, Person, SessionRow};
use parasol_api::Role;

/// Name of the session cookie.
pub const COOKIE: &str = "parasol_session";
/// Form field and header carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Header htmx sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts from sign-in.
const LIFETIME_MS: i64 = 12 * 3600 * 1000;
const SETTING: &str = "console_session_key";

/// The deployment's session signing key, read from the store once.
#[derive(Default)]
pub struct SessionKey(OnceCell<Vec<u8>>);

impl SessionKey {
    async fn get(&self, app: &AppRef) -> Result<&[u8], ApiError> {
        let key = self
            .0
            .get_or_try_init(|| async {
                let hex = app
                    .store
                    .setting_or_init(SETTING, || {
                        let bytes: [u8; 32] = rand::rng().random();
                        to_hex(&bytes)
                    })
                    .await?;
                from_hex(&hex)
                    .ok_or_else(|| ApiError::internal(format!("the stored {SETTING} is not hex")))
            })
            .await?;
        Ok(key)
    }
}

/// A signed-in browser: its account, its role there and the CSRF token
/// its forms carry; for a person, who they are and their accounts.
#[derive(Clone)]
pub struct Session {
    pub account: Account,
    pub role: Role,
    pub csrf: String,
    /// The SHA-256 of the session's id (its `console_sessions` key).
    pub id_hash: String,
    pub person: Option<SignedIn>,
}

impl Session {
    /// Who acts through this session, as API handlers take it.
    pub fn principal(&self) -> crate::http::Principal {
        crate::http::Principal {
            role: self.role,
            person: self.person.as_ref().map(|p| p.person.id),
        }
    }
}

/// The person behind a session.
#[derive(Clone)]
pub struct SignedIn {
    pub person: Person,
    /// Every account they may switch to, the current one included.
    pub accounts: Vec<Membership>,
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// HMAC-SHA256 (RFC 2104) over `msg`.
fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn csrf_for(key: &[u8], nonce: &str) -> String {
    to_hex(&hmac(key, format!("csrf.{nonce}").as_bytes()))
}

/// A fresh token for the session with this id.
fn issue(key: &[u8], session_id: &str, now_ms: i64) -> String {
    let nonce: [u8; 16] = rand::rng().random();
    let payload = format!("{}.{}.{session_id}", now_ms + LIFETIME_MS, to_hex(&nonce));
    let sig = to_hex(&hmac(key, payload.as_bytes()));
    format!("{payload}.{sig}")
}

/// The session id and nonce of a token that is well signed and unexpired.
fn verify<'a>(key: &[u8], token: &'a str, now_ms: i64) -> Option<(&'a str, &'a str)> {
    let (payload, sig) = token.rsplit_once('.')?;
    let want = to_hex(&hmac(key, payload.as_bytes()));
    if !bool::from(want.as_bytes().ct_eq(sig.as_bytes())) {
        return None;
    }
    let mut parts = payload.splitn(3, '.');
    let expires: i64 = parts.next()?.parse().ok()?;
    let nonce = parts.next()?;
    let key_hash = parts.next()?;
    (now_ms < expires).then_some((key_hash, nonce))
}

pub(super) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session a request's cookie names, if it is valid.
async fn session_of(app: &AppRef, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(token) = cookie_value(headers, COOKIE) else {
        return Ok(None);
    };
    let key = app.console_key.get(app).await?;
    let now = app.clock.now_ms();
    let Some((session_id, nonce)) = verify(key, token, now) else {
        return Ok(None);
    };
    let id_hash = hash_key(session_id);
    let csrf = csrf_for(key, nonce);
    // Kept like keys, and dropped by the same changes (crate::auth_sync).
    let (cached, epoch) = app.keys.session(&id_hash, now);
    let found = match cached {
        Some(s) => s,
        None => {
            let Some(row) = app.store.console_session(&id_hash, now).await? else {
                return Ok(None);
            };
            let person = match row.person_id {
                Some(person_id) => {
                    let Some((account, role)) =
                        app.store.member_access(person_id, row.account_id).await?
                    else {
                        return Ok(None);
                    };
                    let Some(person) = app.store.person(person_id).await? else {
                        return Ok(None);
                    };
                    let accounts = app.store.memberships_of(person_id).await?;
                    Some((account, role, person, accounts))
                }
                None => None,
            };
            let s = CachedSession { row, person };
            app.keys.put_session(epoch, &id_hash, s.clone());
            s
        }
    };
    if let Some((account, role, person, accounts)) = found.person {
        return Ok(Some(Session {
            account,
            role,
            csrf,
            id_hash,
            person: Some(SignedIn { person, accounts }),
        }));
    }
    let Some(key_hash) = &found.row.key_hash else {
        return Ok(None);
    };
    let Some(credential) = crate::http::credential_for_key_hash(app, key_hash).await? else {
        return Ok(None);
    };
    Ok(Some(Session {
        account: credential.account.clone(),
        role: credential.role,
        csrf,
        id_hash,
        person: None,
    }))
}

/// Starts a session (for a key's account, or a person in one of their
/// accounts) and answers the cookie to set.
pub async fn start(app: &AppRef, row: SessionRow) -> Result<HeaderValue, ApiError> {
    let id: [u8; 16] = rand::rng().random();
    let id = to_hex(&id);
    let now = app.clock.now_ms();
    app.store
        .create_console_session(
            &hash_key(&id),
            &SessionRow {
                expires_at_ms: now + LIFETIME_MS,
                ..row
            },
            now,
        )
        .await?;
    let signing = app.console_key.get(app).await?;
    Ok(cookie(app, &issue(signing, &id, now), LIFETIME_MS / 1000))
}

/// Pages for signed-in browsers only: others are sent to sign in. An htmx
/// refresh is told with `HX-Redirect` (a 303 would be followed inside the
/// XHR and the sign-in page swapped into a table cell).
fn sign_in_first(headers: &HeaderMap) -> Response {
    if headers.contains_key("hx-request") {
        return (
            StatusCode::OK,
            [(header::HeaderName::from_static("hx-redirect"), "/login")],
        )
            .into_response();
    }
    Redirect::to("/login").into_response()
}

impl FromRequestParts<AppRef> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppRef) -> Result<Self, Response> {
        if let Some(s) = parts.extensions.get::<Session>() {
            return Ok(s.clone());
        }
        match session_of(app, &parts.headers).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(sign_in_first(&parts.headers)),
            Err(e) => Err(super::PageError(e).into_response()),
        }
    }
}

impl OptionalFromRequestParts<AppRef> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppRef) -> Result<Option<Self>, Response> {
        session_of(app, &parts.headers)
            .await
            .map_err(|e| super::PageError(e).into_response())
    }
}

/// Is this request from a page of this very site? Browsers send Origin on
/// every POST (and Sec-Fetch-Site); a request with neither is not from a
/// browser page, and still needs the CSRF token to change anything.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let bare = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        return bare == Some(host);
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

fn refused(message: &str) -> Response {
    super::PageError(ApiError::forbidden(message)).into_response()
}

/// Middleware on every console route: a POST must come from this site and,
/// once signed in, carry the session's CSRF token (form field or header),
/// and the session's role must be one the route allows
/// ([`crate::http::roles`], as for the API).
pub async fn guard(State(app): State<AppRef>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    if !same_origin(req.headers()) {
        return refused(
            "cross-site request refused: this form must be sent from the Parasol console",
        );
    }
    if req.uri().path() == "/login" {
        return next.run(req).await;
    }
    let session = match session_of(&app, req.headers()).await {
        Ok(Some(s)) => s,
        Ok(None) => return sign_in_first(req.headers()),
        Err(e) => return super::PageError(e).into_response(),
    };
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return super::PageError(ApiError::too_large(BODY_LIMIT)).into_response();
    };
    let sent = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| form_urlencoded_field(&bytes, CSRF_FIELD));
    let ok = sent.is_some_and(|t| bool::from(t.as_bytes().ct_eq(session.csrf.as_bytes())));
    if !ok {
        return refused("the form's CSRF token is missing or stale; reload the page and try again");
    }
    let route = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map_or(parts.uri.path(), |m| m.as_str());
    let caller = crate::http::Caller(session.account.id);
    let principal = session.principal();
    let mut res = match crate::http::roles::check(&parts.method, route, session.role, "session") {
        Err(e) => super::PageError(e).into_response(),
        Ok(()) => {
            parts.extensions.insert(session);
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
    };
    // For the audit log, which runs outside this.
    res.extensions_mut().insert(caller);
    res.extensions_mut().insert(principal);
    res
}

fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

pub(super) fn cookie(app: &AppRef, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if app.tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .expect("a cookie of token characters is a valid header")
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    api_key: String,
}

/// The sign-in page: a button for each identity provider, and the API-key
/// form unless the operator turned it off.
pub(super) fn login_form(app: &AppRef, error: Option<&str>) -> maud::Markup {
    let providers = &app.oidc.settings.providers;
    layout::bare(
        "Sign in",
        html! {
            @if app.sim.is_some() { (layout::sim_banner()) }
            main.login {
                h1 { "Parasol" }
                @if let Some(e) = error.filter(|_| !app.oidc.settings.key_sign_in) {
                    p.field-error role="alert" { (e) }
                }
                @if !providers.is_empty() {
                    div.providers {
                        @for p in providers {
                            a.button.primary href=(format!("/oidc/{}/start", p.id)) data-provider=(p.id) {
                                "Sign in with " (p.name)
                            }
                        }
                    }
                }
                @if app.oidc.settings.key_sign_in {
                    @if !providers.is_empty() { p.small.muted { "or with an API key:" } }
                    @else {
                        p { "Sign in with your API key: the admin key is printed at the server's first start "
                            "(and saved as " code { "admin-api-key" } " in its data directory)." }
                    }
                    form method="post" action="/login" {
                        label for="api_key" { "API key" }
                        input #api_key type="password" name="api_key" autocomplete="current-password"
                            placeholder="psl_…" required autofocus[providers.is_empty()];
                        @if let Some(e) = error { p.field-error role="alert" { (e) } }
                        button.primary[providers.is_empty()] type="submit" { "Sign in" }
                    }
                }
            }
        },
    )
}

/// `GET /login`.
pub async fn login_page(State(app): State<AppRef>, session: Option<Session>) -> Response {
    if session.is_some() {
        return Redirect::to("/instances").into_response();
    }
    super::html(login_form(&app, None))
}

/// `POST /login`: the key for a session cookie.
/// Wrong keys count against the address's failed-authentication bucket as
/// on the API, so the form is no way around the limit on guessing keys.
pub async fn login(
    State(app): State<AppRef>,
    conn: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    Form(form): Form<LoginForm>,
) -> PageResult {
    if !app.oidc.settings.key_sign_in {
        return Ok(html_status(
            StatusCode::FORBIDDEN,
            login_form(
                &app,
                Some("Signing in with an API key is turned off on this server."),
            ),
        ));
    }
    let ip = conn.map(|c| c.0 .0.ip());
    if app.limits.may_authenticate(ip).is_err() {
        return Ok(html_status(
            StatusCode::TOO_MANY_REQUESTS,
            login_form(
                &app,
                Some("Too many wrong keys from this address; wait a minute and try again."),
            ),
        ));
    }
    let key = form.api_key.trim();
    let hash = hash_key(key);
    let account = if key.is_empty() {
        None
    } else {
        crate::http::account_for_key_hash(&app, &hash).await?
    };
    let Some(account) = account else {
        app.limits.failed_authentication(ip);
        return Ok(html_status(
            StatusCode::UNAUTHORIZED,
            login_form(
                &app,
                Some(if key.is_empty() {
                    "Enter your API key."
                } else {
                    "That API key is not valid."
                }),
            ),
        ));
    };
    let set = start(
        &app,
        SessionRow {
            account_id: account.id,
            person_id: None,
            key_hash: Some(hash),
            expires_at_ms: 0,
        },
    )
    .await?;
    let mut res = Redirect::to("/instances").into_response();
    res.headers_mut().insert(header::SET_COOKIE, set);
    Ok(res)
}

/// `POST /logout`: ends the session on every replica and forgets the
/// cookie.
pub async fn logout(State(app): State<AppRef>, session: Session) -> PageResult {
    app.store
        .end_console_session(&session.id_hash, app.clock.now_ms())
        .await?;
    app.keys.forget_session(&session.id_hash);
    crate::auth_sync::everywhere(&app).await?;
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, cookie(&app, "", 0));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            to_hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_verify_until_they_expire_and_not_when_altered() {
        let key = b"k".repeat(32);
        let t = issue(&key, "abc", 1_000);
        assert_eq!(verify(&key, &t, 2_000).map(|v| v.0), Some("abc"));
        assert!(verify(&key, &t, 1_000 + LIFETIME_MS).is_none());
        assert!(verify(b"other", &t, 2_000).is_none());
        let forged = t.replacen("abc", "abd", 1);
        assert!(verify(&key, &forged, 2_000).is_none());
    }

    #[test]
    fn origins_of_other_sites_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }
}
