//! Events (alerts, auto-deletes, preemptions) and the admin's system page.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};
use serde_json::Value;

use super::layout::{self, Nav};
use super::{api, html, PageResult, Session};
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::http::{self, AppRef};
use crate::listener::Draining;

/// `GET /events`, newest first.
pub async fn page(State(app): State<AppRef>, session: Session) -> PageResult {
    let mut events = app.store.list_events(session.account.id).await?;
    events.reverse();
    let body = html! {
        h1 { "Events" }
        // Refreshed whenever the stream brings any event.
        div #events-live hx-get="/events" hx-select="#events-live" hx-swap="outerHTML"
            hx-trigger=(layout::LIVE_TRIGGER) data-live="" {
            @if events.is_empty() {
                div.empty { p { "Nothing has happened yet. Alerts, auto-deletes and preemptions of your instances show up here." } }
            } @else {
                table #events {
                    thead { tr { th { "When" } th { "Kind" } th { "What" } th { "Instance" } } }
                    tbody {
                        @for e in &events {
                            tr {
                                td.small { (from_millis(e.created_at).format("%Y-%m-%d %H:%M:%S UTC")) }
                                td { span class=(kind_class(&e.kind)) { (e.kind) } }
                                td { (e.message) }
                                td { @if let Some(i) = e.instance_id { a href=(format!("/instances/{i}")) { "open" } } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html(layout::page(
        &app,
        &session,
        Nav::Events,
        "Events",
        body,
    )))
}

/// `GET /events/stream`: the API's event stream under the session cookie,
/// for the pages' script (assets/live.js), so no API key reaches the
/// browser. Only the account's own events, an admin's too: the pages it
/// refreshes show the signed-in account's things.
pub async fn stream(
    State(app): State<AppRef>,
    session: Session,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    draining: Option<Extension<Draining>>,
) -> Result<Response, ApiError> {
    http::events::serve(app, Some(session.account.id), query, headers, draining).await
}

fn kind_class(kind: &str) -> &'static str {
    if kind.starts_with("alert") {
        "st st-pending"
    } else {
        "st st-error"
    }
}

/// A JSON answer as nested definition lists: the system page shows admin
/// endpoints' answers as they are, so it never falls behind them.
fn tree(v: &Value) -> Markup {
    html! {
        @match v {
            Value::Object(m) => dl.fields { @for (k, v) in m { dt { (k) } dd { (tree(v)) } } },
            Value::Array(a) if a.is_empty() => span.muted { "none" },
            Value::Array(a) => ul { @for v in a { li { (tree(v)) } } },
            Value::String(s) => (s),
            other => (other.to_string()),
        }
    }
}

/// `GET /system`: readiness and the reconciler, for admins only.
pub async fn system(State(app): State<AppRef>, session: Session) -> PageResult {
    if !session.account.is_admin {
        return Err(ApiError::forbidden("the system page is for admin accounts").into());
    }
    let ready: Value = api(async { Ok(http::admin::readyz(State(app.clone())).await) }).await?;
    let reconciler: Value = api(http::admin::reconciler(
        State(app.clone()),
        Extension(session.account.clone()),
    ))
    .await?;
    let body = html! {
        h1 { "System" }
        h2 { "Readiness" } (tree(&ready))
        h2 { "Reconciler" } (tree(&reconciler))
    };
    Ok(html(layout::page(
        &app,
        &session,
        Nav::System,
        "System",
        body,
    )))
}
