//! Webhooks: the account's endpoints (create with the secret shown once,
//! enable or disable, rotate the secret, send a test ping, delete) and each
//! endpoint's recent delivery attempts.

use std::collections::HashMap;

use super::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use maud::{html, Markup};
use parasol_api::{
    Confirmation, Webhook, WebhookDeliveriesResponse, WebhookSecretResponse, WebhookTestResponse,
    WebhooksResponse,
};
use serde::Deserialize;
use serde_json::json;

use super::layout::{self, csrf, empty, field_error, form_error, when, Nav};
use super::{api, html, html_status, request, see, PageError, PageResult, Session};
use crate::error::ApiError;
use crate::http::{self, AppRef, Body};

/// How many attempts an endpoint's page shows.
const RECENT: &str = "50";

/// The create form; `events` is types or patterns separated by commas or
/// spaces.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CreateForm {
    url: String,
    events: String,
    description: String,
    /// A checkbox, shown to admins only; present when ticked.
    all_accounts: Option<String>,
}

/// The enable/disable buttons' form.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EnabledForm {
    enabled: String,
}

/// The secret just made (by a create or a rotation): on this one page, with
/// a copy button, and never again.
fn secret_notice(made: Option<&WebhookSecretResponse>, what: &str) -> Markup {
    html! {
        @if let Some(m) = made {
            div.notice #new-secret {
                p { (what) " — copy it now, it is shown only this once. Receivers verify each delivery's "
                    code { "webhook-signature" } " with it (any Standard Webhooks library takes it as it is)." }
                div.ssh {
                    code #webhook-secret data-secret { (m.secret) }
                    button type="button" data-copy="webhook-secret" { "Copy" }
                }
            }
        }
    }
}

fn enabled_word(w: &Webhook) -> Markup {
    html! {
        @if w.enabled { span.st.st-active { "enabled" } } @else { span.st.st-gone { "disabled" } }
    }
}

/// The buttons acting on one endpoint; each posts to the console route of
/// the API route it stands for.
fn actions(s: &Session, w: &Webhook) -> Markup {
    let base = format!("/webhooks/{}", w.id);
    html! {
        form.inline method="post" action=(format!("{base}/update")) {
            (csrf(s))
            @if w.enabled {
                input type="hidden" name="enabled" value="false";
                button type="submit" { "Disable" }
            } @else {
                input type="hidden" name="enabled" value="true";
                button type="submit" { "Enable" }
            }
        }
        " "
        form.inline method="post" action=(format!("{base}/test")) {
            (csrf(s)) button type="submit" disabled[!w.enabled] { "Send test" }
        }
        " "
        form.inline method="post" action=(format!("{base}/rotate-secret"))
            data-confirm="Make a new secret? The current one keeps signing beside it for 24 hours." {
            (csrf(s)) button type="submit" { "Rotate secret" }
        }
        " "
        form.inline method="post" action=(format!("{base}/delete"))
            data-confirm="Delete this webhook? Deliveries not yet made are dropped." {
            (csrf(s)) button.danger type="submit" { "Delete" }
        }
    }
}

async fn render(
    app: &AppRef,
    s: &Session,
    f: &CreateForm,
    made: Option<&WebhookSecretResponse>,
    err: Option<&ApiError>,
) -> PageResult {
    let hooks: WebhooksResponse = api(http::webhooks::list(
        State(app.clone()),
        Extension(s.account.clone()),
    ))
    .await?;
    // The all_accounts box is an admin's only; anyone else's refusal shows
    // at the top of the form.
    let shown: &[&str] = if s.account.is_admin {
        &["url", "events", "description", "all_accounts"]
    } else {
        &["url", "events", "description"]
    };
    let body = html! {
        h1 { "Webhooks" }
        p.small { "Each endpoint receives the account's events it subscribes to as signed POSTs, retried for 24 hours until it answers 2xx. Order across events is not guaranteed." }
        (secret_notice(made, "The new webhook's secret"))
        (form_error(err, shown))
        @if hooks.webhooks.is_empty() {
            (empty("No webhooks yet: add an endpoint below to receive events as they happen.", "#create-webhook", "Add a webhook"))
        } @else {
            table #webhooks {
                thead { tr { th { "URL" } th { "Events" } th { "Status" } th { "Description" } th { "Created" } th {} } }
                tbody {
                    @for w in &hooks.webhooks {
                        tr data-id=(w.id) data-url=(w.url) {
                            td { a href=(format!("/webhooks/{}", w.id)) { (w.url) } }
                            td.small { (w.events.join(", ")) @if w.all_accounts { " " span.muted { "(every account)" } } }
                            td { (enabled_word(w)) }
                            td { (w.description.as_deref().unwrap_or("")) }
                            td { (when(w.created_at)) }
                            td { (actions(s, w)) }
                        }
                    }
                }
            }
        }
        h2 #create-webhook { "Add a webhook" }
        form.stack method="post" action="/webhooks" {
            (csrf(s))
            label { "URL" input name="url" value=(f.url) placeholder="https://example.com/parasol-events" required; (field_error(err, "url")) }
            label { "Events (comma-separated; a prefix such as instance.* or * for all)"
                input name="events" value=(f.events) placeholder="instance.*, budget.alert" required;
                (field_error(err, "events")) }
            p.small.muted { "Types: " (crate::webhooks::TYPES.join(", ")) }
            label { "Description (optional)" input name="description" value=(f.description); (field_error(err, "description")) }
            @if s.account.is_admin {
                label { span { input type="checkbox" name="all_accounts" value="true" checked[f.all_accounts.is_some()]; " Every account's events (admins only)" }
                    (field_error(err, "all_accounts")) }
            }
            div.actions { button.primary type="submit" { "Create webhook" } }
        }
    };
    let st = err.map(|e| e.status).unwrap_or(StatusCode::OK);
    Ok(html_status(
        st,
        layout::page(app, s, Nav::Webhooks, "Webhooks", body),
    ))
}

/// `GET /webhooks`.
pub async fn page(State(app): State<AppRef>, session: Session) -> PageResult {
    render(&app, &session, &CreateForm::default(), None, None).await
}

/// `POST /webhooks`: makes an endpoint and shows its secret on the page
/// this once (a redirect would lose it).
pub async fn create(
    State(app): State<AppRef>,
    session: Session,
    Form(f): Form<CreateForm>,
) -> PageResult {
    let r: Result<WebhookSecretResponse, ApiError> = async {
        let events: Vec<&str> = f
            .events
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .collect();
        let req = request(&json!({
            "url": f.url.trim(),
            "events": events,
            "description": f.description,
            "all_accounts": f.all_accounts.is_some(),
        }))?;
        api(http::webhooks::create(
            State(app.clone()),
            Extension(session.account.clone()),
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

async fn deliveries_part(app: &AppRef, s: &Session, id: &str) -> Result<Markup, ApiError> {
    let d: WebhookDeliveriesResponse = api(http::webhooks::deliveries(
        State(app.clone()),
        Extension(s.account.clone()),
        Path(id.to_string()),
        Query(HashMap::from([("limit".to_string(), RECENT.to_string())])),
    ))
    .await?;
    Ok(html! {
        div #deliveries-live hx-get=(format!("/webhooks/{id}/deliveries")) hx-trigger="every 2s" hx-swap="outerHTML" {
            @if d.deliveries.is_empty() {
                p.muted #no-deliveries { "No attempts yet. Send a test to see one here." }
            } @else {
                table #deliveries {
                    thead { tr { th { "Time" } th { "Event" } th { "Type" } th.num { "Attempt" } th { "Result" } th.num { "Duration" } } }
                    tbody {
                        @for a in &d.deliveries {
                            tr data-id=(a.event_id) data-type=(a.event_type) {
                                td { (a.at.format("%Y-%m-%d %H:%M:%S UTC")) }
                                td.small { code { (a.event_id) } }
                                td { (a.event_type) }
                                td.num { (a.attempt) }
                                td.result { @match (a.status_code, &a.error) {
                                    (Some(c), _) if (200..300).contains(&c) => span.st.st-active { (c) },
                                    (Some(c), _) => span.st.st-error { (c) },
                                    (None, Some(e)) => span.st.st-error { (e) },
                                    (None, None) => span.muted { "no answer" },
                                } }
                                td.num { (a.duration_ms) " ms" }
                            }
                        }
                    }
                }
            }
        }
    })
}

async fn render_one(
    app: &AppRef,
    s: &Session,
    id: &str,
    made: Option<&WebhookSecretResponse>,
    err: Option<&ApiError>,
) -> PageResult {
    let w: Webhook = api(http::webhooks::info(
        State(app.clone()),
        Extension(s.account.clone()),
        Path(id.to_string()),
    ))
    .await?;
    let deliveries = deliveries_part(app, s, id).await?;
    let body = html! {
        p.small { a href="/webhooks" { "← Webhooks" } }
        h1 { "Webhook" }
        (secret_notice(made, "The new secret"))
        (form_error(err, &[]))
        dl.fields #webhook {
            dt { "URL" } dd { code { (w.url) } }
            dt { "Events" } dd { (w.events.join(", ")) @if w.all_accounts { " " span.muted { "(every account)" } } }
            dt { "Status" } dd { (enabled_word(&w)) }
            dt { "Description" } dd { (w.description.as_deref().unwrap_or("")) }
            dt { "Created" } dd { (when(w.created_at)) }
            @if let Some(at) = w.previous_secret_expires_at {
                dt { "Previous secret" } dd { "also signs until " (when(at)) }
            }
        }
        div.actions { (actions(s, &w)) }
        h2 { "Recent deliveries" }
        (deliveries)
    };
    let st = err.map(|e| e.status).unwrap_or(StatusCode::OK);
    Ok(html_status(
        st,
        layout::page(app, s, Nav::Webhooks, "Webhook", body),
    ))
}

/// `GET /webhooks/{id}`: the endpoint and its recent attempts.
pub async fn detail(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    render_one(&app, &session, &id, None, None).await
}

/// `GET /webhooks/{id}/deliveries`: the attempts table alone, which the
/// endpoint's page polls.
pub async fn deliveries(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    Ok(html(deliveries_part(&app, &session, &id).await?))
}

/// An action's answer: on to `to`, or the endpoint's page with the API's
/// message (an endpoint that is not the account's is a 404 page).
async fn after<T>(
    app: &AppRef,
    s: &Session,
    id: &str,
    r: Result<T, ApiError>,
    to: String,
) -> PageResult {
    match r {
        Ok(_) => Ok(see(&to)),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(PageError(e)),
        Err(e) => render_one(app, s, id, None, Some(&e)).await,
    }
}

/// `POST /webhooks/{id}/update`: enables or disables the endpoint.
pub async fn update(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<EnabledForm>,
) -> PageResult {
    let r: Result<Webhook, ApiError> = async {
        let enabled = match f.enabled.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(ApiError::invalid_field(
                    "enabled",
                    format!("enabled must be true or false; got {other:?}"),
                ))
            }
        };
        let req = request(&json!({ "enabled": enabled }))?;
        api(http::webhooks::update(
            State(app.clone()),
            Extension(session.account.clone()),
            Path(id.clone()),
            Body(req),
        ))
        .await
    }
    .await;
    after(&app, &session, &id, r, "/webhooks".into()).await
}

/// `POST /webhooks/{id}/test`: queues a ping; the endpoint's page shows its
/// attempt once made.
pub async fn test(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let r: Result<WebhookTestResponse, ApiError> = api(http::webhooks::test(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id.clone()),
    ))
    .await;
    let to = format!("/webhooks/{id}");
    after(&app, &session, &id, r, to).await
}

/// `POST /webhooks/{id}/rotate-secret`: shows the new secret on the
/// endpoint's page this once.
pub async fn rotate_secret(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let r: Result<WebhookSecretResponse, ApiError> = api(http::webhooks::rotate_secret(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id.clone()),
    ))
    .await;
    match r {
        Ok(made) => render_one(&app, &session, &id, Some(&made), None).await,
        Err(e) => after::<()>(&app, &session, &id, Err(e), String::new()).await,
    }
}

/// `POST /webhooks/{id}/delete`.
pub async fn delete(
    State(app): State<AppRef>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let r: Result<Confirmation, ApiError> = api(http::webhooks::delete(
        State(app.clone()),
        Extension(session.account.clone()),
        Path(id.clone()),
    ))
    .await;
    after(&app, &session, &id, r, "/webhooks".into()).await
}
