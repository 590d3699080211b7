//! Signing in through an OpenID provider ([`crate::oidc`]), the page for
//! people no account has, and switching between a person's accounts.
//!
//! `/oidc/{provider}/start` records the sign-in (state, nonce, PKCE
//! verifier) in the store, so the browser may come back to any replica,
//! and binds it to this browser with a short-lived cookie: SameSite=Lax,
//! since the provider's redirect back is a cross-site navigation, which
//! would not carry a Strict cookie. The callback takes the record (once:
//! a replayed callback finds nothing), checks the cookie, redeems the code
//! and checks the ID token, then applies the config's rules and any
//! invitations. The session cookie (Strict) is set on a page that moves
//! on to the console by itself, because a Strict cookie set during a
//! cross-site redirect chain would not be sent on the chain's next hop.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::session::{cookie_value, login_form, start as start_session};
use super::{html_status, layout, see, Form, PageError, PageResult, Session};
use crate::error::ApiError;
use crate::http::{hash_key, AppRef};
use crate::oidc::{grants, pkce, random_token, OidcError};
use crate::store::{PendingLogin, SessionRow};

/// The cookie binding a sign-in under way to the browser that began it.
const STATE_COOKIE: &str = "parasol_oidc";
/// How long a person has to finish signing in at the provider.
const PENDING_MS: i64 = 10 * 60 * 1000;

fn state_cookie(app: &AppRef, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if app.tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={value}; Path=/oidc/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}"
    ))
    .expect("a cookie of token characters is a valid header")
}

/// Where the provider sends the browser back: the configured public URL,
/// else this request's own scheme and host.
fn redirect_uri(app: &AppRef, headers: &HeaderMap, provider: &str) -> String {
    let base = app.oidc.settings.public_url.clone().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let scheme = if app.tls { "https" } else { "http" };
        format!("{scheme}://{host}")
    });
    format!("{base}/oidc/{provider}/callback")
}

/// The sign-in page again, with what went wrong.
fn sign_in_failed(app: &AppRef, status: StatusCode, message: &str) -> Response {
    html_status(status, login_form(app, Some(message)))
}

fn provider_failed(app: &AppRef, e: &OidcError) -> Response {
    tracing::warn!(error = %e, "OpenID sign-in failed");
    let status = match e {
        OidcError::Provider(_) => StatusCode::BAD_GATEWAY,
        OidcError::Token(_) => StatusCode::UNAUTHORIZED,
    };
    sign_in_failed(app, status, &format!("Signing in failed: {e}."))
}

/// `GET /oidc/{provider}/start`: off to the provider.
pub async fn start(
    State(app): State<AppRef>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let Some(p) = app.oidc.provider(&id) else {
        return Err(ApiError::not_found("identity provider").into());
    };
    let m = match app.oidc.discovery.metadata(&app.oidc.http, p).await {
        Ok(m) => m,
        Err(e) => return Ok(provider_failed(&app, &e)),
    };
    let (state, nonce) = (random_token(), random_token());
    let (verifier, challenge) = pkce();
    let redirect = redirect_uri(&app, &headers, &p.id);
    let now = app.clock.now_ms();
    app.store
        .put_oidc_login(
            &hash_key(&state),
            &PendingLogin {
                provider: p.id.clone(),
                nonce: nonce.clone(),
                verifier,
                redirect_uri: redirect.clone(),
                expires_at_ms: now + PENDING_MS,
            },
            now,
        )
        .await?;
    let url = reqwest::Url::parse_with_params(
        &m.authorization_endpoint,
        &[
            ("response_type", "code"),
            ("client_id", p.client_id.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("scope", p.scopes.as_str()),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .map_err(|e| ApiError::internal(format!("the provider's authorization endpoint: {e}")))?;
    let mut res = see(url.as_str());
    res.headers_mut().insert(
        header::SET_COOKIE,
        state_cookie(&app, &state, PENDING_MS / 1000),
    );
    Ok(res)
}

/// The provider's redirect back.
#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /oidc/{provider}/callback`: the code for a session.
pub async fn callback(
    State(app): State<AppRef>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> PageResult {
    if let Some(err) = &q.error {
        let why = q.error_description.as_deref().unwrap_or(err);
        return Ok(sign_in_failed(
            &app,
            StatusCode::UNAUTHORIZED,
            &format!("The identity provider did not sign you in: {why}."),
        ));
    }
    let (Some(code), Some(state)) = (&q.code, &q.state) else {
        return Ok(sign_in_failed(
            &app,
            StatusCode::BAD_REQUEST,
            "The identity provider's answer lacks its code or state; sign in again.",
        ));
    };
    let now = app.clock.now_ms();
    // Taken before anything else is checked, so a callback is answered
    // once whatever happens next.
    let pending = app.store.take_oidc_login(&hash_key(state), now).await?;
    let Some(pending) = pending.filter(|p| p.provider == id) else {
        return Ok(sign_in_failed(
            &app,
            StatusCode::BAD_REQUEST,
            "This sign-in was already used or has expired; sign in again.",
        ));
    };
    let bound = cookie_value(&headers, STATE_COOKIE)
        .is_some_and(|c| bool::from(c.as_bytes().ct_eq(state.as_bytes())));
    if !bound {
        return Ok(sign_in_failed(
            &app,
            StatusCode::FORBIDDEN,
            "This sign-in was not started in this browser; sign in again.",
        ));
    }
    let Some(p) = app.oidc.provider(&id) else {
        return Err(ApiError::not_found("identity provider").into());
    };
    let oidc = &app.oidc;
    let checked = async {
        let m = oidc.discovery.metadata(&oidc.http, p).await?;
        let token = crate::oidc::redeem(
            &oidc.http,
            p,
            &m,
            code,
            &pending.redirect_uri,
            &pending.verifier,
        )
        .await?;
        oidc.discovery
            .verify(&oidc.http, p, &token, &pending.nonce, app.clock.now_ms())
            .await
    }
    .await;
    let who = match checked {
        Ok(who) => who,
        Err(e) => return Ok(provider_failed(&app, &e)),
    };
    let person = app
        .store
        .sign_in_person(
            &p.issuer,
            &who.subject,
            who.email.as_deref().filter(|_| who.email_verified),
            who.name.as_deref(),
            now,
        )
        .await?;
    let mut granted = vec![];
    for (name, role) in grants(&oidc.settings.rules, &p.id, &who) {
        match app.store.account_ids_named(&name).await?.as_slice() {
            [one] => granted.push((*one, role)),
            [] => tracing::warn!(account = %name, "an [[oidc.rules]] entry names no account"),
            _ => {
                tracing::warn!(account = %name, "an [[oidc.rules]] entry names several accounts; it grants none")
            }
        }
    }
    app.store.sync_memberships(&person, &granted, now).await?;
    // Their personal keys' roles follow their memberships.
    app.keys.forget_person(person.id);
    crate::auth_sync::everywhere(&app).await?;
    let accounts = app.store.memberships_of(person.id).await?;
    tracing::info!(person = %person.id, provider = %p.id, accounts = accounts.len(), "signed in");
    // Where they can do the most (the first by name among equals).
    let best = accounts.iter().map(|m| m.role).max();
    let Some(first) = accounts.iter().find(|m| Some(m.role) == best) else {
        return Ok(no_access(&app, person.label()));
    };
    let set = start_session(
        &app,
        SessionRow {
            account_id: first.account_id,
            person_id: Some(person.id),
            key_hash: None,
            expires_at_ms: 0,
        },
    )
    .await?;
    let page = layout::bare(
        "Signed in",
        html! {
            meta http-equiv="refresh" content="0;url=/instances";
            main.login {
                h1 { "Signed in" }
                p { "Welcome, " (person.label()) ". " a href="/instances" { "Continue to the console" } }
            }
        },
    );
    let mut res = super::html(page);
    res.headers_mut().append(header::SET_COOKIE, set);
    res.headers_mut()
        .append(header::SET_COOKIE, state_cookie(&app, "", 0));
    Ok(res)
}

/// Signed in, but no account has them: who to ask, and nothing else.
fn no_access(app: &AppRef, who: &str) -> Response {
    let ask = app
        .oidc
        .settings
        .contact
        .clone()
        .unwrap_or_else(|| "the people who run this Parasol server".into());
    let page = layout::bare(
        "No access",
        html! {
            main.login #no-access {
                h1 { "No access yet" }
                p { "You signed in as " strong { (who) } ", but no account on this server has you as a member." }
                p { "Ask " strong { (ask) } " for access: an account's owner can invite you by email, "
                    "or the operator can add a rule for one of your groups." }
                p { a href="/login" { "Back to sign-in" } }
            }
        },
    );
    html_status(StatusCode::FORBIDDEN, page)
}

/// The account switcher's form.
#[derive(Deserialize)]
pub struct SwitchForm {
    account: String,
}

/// `POST /account/switch`: the session moves to another of the person's
/// accounts.
pub async fn switch(
    State(app): State<AppRef>,
    session: Session,
    Form(f): Form<SwitchForm>,
) -> PageResult {
    let Some(me) = &session.person else {
        return Err(PageError(ApiError::forbidden(
            "a session made with an API key belongs to that key's account",
        )));
    };
    let target = crate::http::path_id(&f.account, "account")?;
    if !me.accounts.iter().any(|m| m.account_id == target) {
        return Err(ApiError::not_found("account").into());
    }
    app.store
        .switch_console_session(&session.id_hash, target)
        .await?;
    app.keys.forget_session(&session.id_hash);
    crate::auth_sync::everywhere(&app).await?;
    Ok(see("/instances"))
}
