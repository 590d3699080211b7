//! API keys: list the account's keys, make one (shown once), revoke one.

use super::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use maud::html;
use parasol_api::{ApiKeysResponse, Confirmation, CreateApiKeyResponse};
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
            thead { tr { th { "Name" } th { "Status" } th { "Created" } th { "Last used" } th {} } }
            tbody {
                @for k in &keys.keys {
                    tr data-id=(k.id) data-name=(k.name) {
                        td { (k.name) }
                        td { @match k.revoked_at {
                            Some(at) => { "revoked " (when(at)) },
                            None => { span.st.st-active { "live" } },
                        } }
                        td { (when(k.created_at)) }
                        td { (k.last_used_at.map(when).unwrap_or_else(|| "never".into())) }
                        td { @if k.revoked_at.is_none() {
                            form.inline method="post" action=(format!("/api-keys/{}/revoke", k.id))
                                data-confirm="Revoke this key? Requests with it are refused from now on." {
                                (csrf(s)) button.danger type="submit" { "Revoke" }
                            }
                        } }
                    }
                }
            }
        }
        h2 #create-key { "Create a key" }
        form.stack method="post" action="/api-keys" {
            (csrf(s))
            label { "Name" input name="name" value=(f.name) placeholder="ci" required; (layout::field_error(err, "name")) }
            div.actions { button.primary type="submit" { "Create key" } }
        }
    };
    let st = err.map(|e| e.status).unwrap_or(StatusCode::OK);
    Ok(html_status(
        st,
        layout::page(app, s, Nav::ApiKeys, "API keys", body),
    ))
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
        let req = request(&json!({"name": f.name.trim()}))?;
        api(http::api_keys::create(
            State(app.clone()),
            Extension(session.account.clone()),
            Extension(session.role),
            Body(req),
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
