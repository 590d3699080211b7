//! API keys: list the account's keys, make one (shown once), revoke one.

use super::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use maud::html;
use parasol_api::{ApiKeysResponse, Confirmation, CreateApiKeyResponse, Role};
use serde::Deserialize;
use serde_json::json;

use super::layout::{self, csrf, form_error, when, Nav};
use super::{api, html_status, request, see, PageResult, Session};
use crate::error::ApiError;
use crate::http::{self, AppRef, Body};

/// The create-key form.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CreateForm {
    name: String,
    role: String,
}

async fn render(
    app: &AppRef,
    s: &Session,
    f: &CreateForm,
    made: Option<&CreateApiKeyResponse>,
    err: Option<&ApiError>,
) -> PageResult {
    let keys: ApiKeysResponse = api(http::api_keys::list(
        State(app.clone()),
        Extension(s.account.clone()),
    ))
    .await?;
    let owner = s.role >= Role::Owner;
    let body = html! {
        h1 { "API keys" }
        p.small { "Any live key of the account can sign in here and call the API. A revoked key is refused from the next request on, and signs out the console sessions made with it." }
        @if let Some(m) = made {
            div.notice #new-key {
                p { "The key " strong { (m.name) } " — copy it now, it is shown only this once:" }
                p { code data-api-key { (m.api_key) } }
            }
        }
        (form_error(err, &["name"]))
        table #api-keys {
            thead { tr { th { "Name" } th { "Role" } th { "Status" } th { "Created" } th { "Last used" } th {} } }
            tbody {
                @for k in &keys.keys {
                    tr data-id=(k.id) data-name=(k.name) {
                        td { (k.name) }
                        td { (k.role) }
                        td { @match k.revoked_at {
                            Some(at) => { "revoked " (when(at)) },
                            None => { span.st.st-active { "live" } },
                        } }
                        td { (when(k.created_at)) }
                        td { (k.last_used_at.map(when).unwrap_or_else(|| "never".into())) }
                        td { @if k.revoked_at.is_none() && owner {
                            form.inline method="post" action=(format!("/api-keys/{}/revoke", k.id))
                                data-confirm="Revoke this key? Requests with it are refused from now on." {
                                (csrf(s)) button.danger type="submit" { "Revoke" }
                            }
                        } }
                    }
                }
            }
        }
        @if owner {
            h2 #create-key { "Create a key" }
            form.stack method="post" action="/api-keys" {
                (csrf(s))
                label { "Name" input name="name" value=(f.name) placeholder="ci" required; (layout::field_error(err, "name")) }
                (role_select(&f.role, Role::Owner, err))
                div.actions { button.primary type="submit" { "Create key" } }
            }
        }
        @if s.person.is_some() {
            h2 #create-personal-key { "Create a personal key" }
            p.small { "A personal key acts as you, with at most your role here, and stops working when you leave the account." }
            form.stack method="post" action="/api-keys/personal" {
                (csrf(s))
                label { "Name" input name="name" value=(f.name) placeholder="laptop" required; (layout::field_error(err, "name")) }
                (role_select(&f.role, s.role, err))
                div.actions { button.primary type="submit" { "Create personal key" } }
            }
        }
    };
    let st = err.map(|e| e.status).unwrap_or(StatusCode::OK);
    Ok(html_status(
        st,
        layout::page(app, s, Nav::ApiKeys, "API keys", body),
    ))
}

/// A role picker offering the roles up to `most`, `chosen` (else the
/// most) selected.
fn role_select(chosen: &str, most: Role, err: Option<&ApiError>) -> maud::Markup {
    html! {
        label { "Role"
            select name="role" {
                @for r in Role::ALL.into_iter().filter(|r| *r <= most) {
                    option value=(r) selected[chosen == r.as_str() || (chosen.is_empty() && r == most)] { (r) }
                }
            }
            (layout::field_error(err, "role"))
        }
    }
}

/// `GET /api-keys`.
pub async fn page(State(app): State<AppRef>, session: Session) -> PageResult {
    render(&app, &session, &CreateForm::default(), None, None).await
}

/// `POST /api-keys`: makes a key and shows it on the page this once (a
/// redirect would lose it).
pub async fn create(
    State(app): State<AppRef>,
    session: Session,
    Form(f): Form<CreateForm>,
) -> PageResult {
    let r: Result<CreateApiKeyResponse, ApiError> = async {
        api(http::api_keys::create(
            State(app.clone()),
            Extension(session.account.clone()),
            Extension(session.principal()),
            Body(create_request(&f)?),
        ))
        .await
    }
    .await;
    match r {
        Ok(made) => render(&app, &session, &CreateForm::default(), Some(&made), None).await,
        Err(e) => render(&app, &session, &f, None, Some(&e)).await,
    }
}

fn create_request(f: &CreateForm) -> Result<parasol_api::CreateApiKeyRequest, ApiError> {
    let role = (!f.role.is_empty()).then_some(f.role.as_str());
    request(&json!({"name": f.name.trim(), "role": role}))
}

/// `POST /api-keys/personal`: a key of the signed-in person's own, shown
/// this once.
pub async fn create_personal(
    State(app): State<AppRef>,
    session: Session,
    Form(f): Form<CreateForm>,
) -> PageResult {
    let r: Result<CreateApiKeyResponse, ApiError> = async {
        let person = session.person.as_ref().ok_or_else(|| {
            ApiError::forbidden(
                "personal keys are for people signed in through an identity provider",
            )
        })?;
        api(http::api_keys::mint(
            &app,
            &session.account,
            session.role,
            Some(person.person.id),
            create_request(&f)?,
        ))
        .await
    }
    .await;
    match r {
        Ok(made) => render(&app, &session, &CreateForm::default(), Some(&made), None).await,
        Err(e) => render(&app, &session, &f, None, Some(&e)).await,
    }
}

/// `POST /api-keys/{id}/revoke`.
pub async fn revoke(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let r: Result<Confirmation, ApiError> = api(http::api_keys::revoke(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id),
    ))
    .await;
    match r {
        Ok(_) => Ok(see("/api-keys")),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(e.into()),
        Err(e) => render(&app, &session, &CreateForm::default(), None, Some(&e)).await,
    }
}
