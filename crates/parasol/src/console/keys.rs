//! SSH keys: add by pasting, set the default, delete.

use super::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use maud::html;
use parasol_api::{AddSshKeyResponse, Confirmation, SshKeysResponse};
use serde::Deserialize;
use serde_json::json;

use super::layout::{self, csrf, empty, field_error, form_error, Nav};
use super::{api, html_status, request, see, PageResult, Session};
use crate::error::ApiError;
use crate::http::{self, AppRef, Body};

/// The add-key form.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AddForm {
    name: String,
    public_key: String,
}

async fn render(app: &AppRef, s: &Session, f: &AddForm, err: Option<&ApiError>) -> PageResult {
    let keys: SshKeysResponse = api(http::sshkeys::list(
        State(app.clone()),
        Extension(s.account.clone()),
    ))
    .await?;
    let body = html! {
        h1 { "SSH keys" }
        (form_error(err, &["name", "public_key"]))
        @if keys.ssh_keys.is_empty() {
            (empty("No SSH keys yet: paste your public key below; the first one becomes the default for new instances.", "#add-key", "Add a key"))
        } @else {
            table #keys {
                thead { tr { th { "Name" } th { "Key" } th { "Default" } th {} } }
                tbody {
                    @for k in &keys.ssh_keys {
                        tr data-id=(k.id) data-name=(k.name) {
                            td { (k.name) }
                            td.small { code { (k.public_key.chars().take(48).collect::<String>()) "…" } }
                            td { @if k.is_default { span.st.st-active { "default" } } @else {
                                form.inline method="post" action=(format!("/keys/{}/default", k.id)) {
                                    (csrf(s)) button type="submit" { "Make default" }
                                }
                            } }
                            td { form.inline method="post" action=(format!("/keys/{}/delete", k.id))
                                data-confirm="Delete this key?" {
                                (csrf(s)) button.danger type="submit" { "Delete" }
                            } }
                        }
                    }
                }
            }
        }
        h2 #add-key { "Add a key" }
        form.stack method="post" action="/keys" {
            (csrf(s))
            label { "Name" input name="name" value=(f.name) placeholder="laptop" required; (field_error(err, "name")) }
            label { "Public key" textarea name="public_key" placeholder="ssh-ed25519 AAAA… me@laptop" required { (f.public_key) }
                (field_error(err, "public_key")) }
            div.actions { button.primary type="submit" { "Add key" } }
        }
    };
    let st = err.map(|e| e.status).unwrap_or(StatusCode::OK);
    Ok(html_status(
        st,
        layout::page(app, s, Nav::Keys, "SSH keys", body),
    ))
}

/// `GET /keys`.
pub async fn page(State(app): State<AppRef>, session: Session) -> PageResult {
    render(&app, &session, &AddForm::default(), None).await
}

/// `POST /keys`: adds a pasted key.
pub async fn add(
    State(app): State<AppRef>,
    session: Session,
    Form(f): Form<AddForm>,
) -> PageResult {
    let r: Result<AddSshKeyResponse, ApiError> = async {
        let req = request(&json!({"name": f.name.trim(), "public_key": f.public_key.trim()}))?;
        api(http::sshkeys::add(
            State(app.clone()),
            Extension(session.account.clone()),
            Body(req),
        ))
        .await
    }
    .await;
    match r {
        Ok(_) => Ok(see("/keys")),
        Err(e) => render(&app, &session, &f, Some(&e)).await,
    }
}

async fn done(app: &AppRef, s: &Session, r: Result<Confirmation, ApiError>) -> PageResult {
    match r {
        Ok(_) => Ok(see("/keys")),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(e.into()),
        Err(e) => render(app, s, &AddForm::default(), Some(&e)).await,
    }
}

/// `POST /keys/{id}/default`.
pub async fn set_default(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let r = api(http::sshkeys::set_default(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id),
    ))
    .await;
    done(&app, &session, r).await
}

/// `POST /keys/{id}/delete`.
pub async fn delete(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let r = api(http::sshkeys::delete(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id),
    ))
    .await;
    done(&app, &session, r).await
}
