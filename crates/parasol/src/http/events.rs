//! `GET /v1/events`: Parasol's own extension listing what happened to the
//! account's resources; `GET /v1/events/stream`: the same events live, as
//! server-sent events (crate::event_stream).

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::json;
use uuid::Uuid;

use super::{ok, AppRef};
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::event_stream::{Filter, HEARTBEAT};
use crate::listener::Draining;
use crate::store::Account;

/// `GET /v1/events`, oldest first.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    let events: Vec<_> = app
        .store
        .list_events(account.id)
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "instance_id": e.instance_id,
                "kind": e.kind,
                "message": e.message,
                "created_at": from_millis(e.created_at),
            })
        })
        .collect();
    Ok(ok(json!({ "events": events })))
}

/// The query parameters the stream takes.
const STREAM_PARAMS: &[&str] = &["types", "last_event_id"];

/// `types=instance.*,budget.alert`: the patterns, each one a subscription
/// may name.
fn parse_types(raw: &str) -> Result<Vec<String>, ApiError> {
    let types: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if types.is_empty() {
        return Err(ApiError::invalid_field(
            "types",
            "types must name at least one event type or pattern (such as instance.*), comma-separated",
        ));
    }
    if let Some(bad) = types.iter().find(|t| !crate::webhooks::pattern_is_known(t)) {
        return Err(ApiError::invalid_field(
            "types",
            format!(
                "unknown event type {bad:?}; known types: {} (or a prefix such as \"instance.*\", or \"*\")",
                crate::webhooks::TYPES.join(", ")
            ),
        ));
    }
    Ok(types)
}

/// The id of the last event the client received, from the
/// `Last-Event-ID` header (what EventSource sends when it reconnects) or
/// the `last_event_id` parameter (for clients that cannot set headers).
fn parse_last_id(
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<Option<i64>, ApiError> {
    let (raw, field) = match headers.get("last-event-id") {
        Some(v) => (
            Some(v.to_str().unwrap_or("\u{fffd}").trim().to_string()),
            "Last-Event-ID",
        ),
        None => (
            q.get("last_event_id").map(|v| v.trim().to_string()),
            "last_event_id",
        ),
    };
    match raw.as_deref() {
        // An empty header is what EventSource sends before it has an id.
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    field,
                    format!(
                        "{field} {v:?} is not the id of an event this stream sent (a whole number)"
                    ),
                )
            }),
    }
}

/// `GET /v1/events/stream`: every event of the caller's account (an admin
/// key: of every account) as it is recorded, in log order; `types=`
/// narrows it; `Last-Event-ID` first replays what came after that event.
pub async fn stream(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    draining: Option<Extension<Draining>>,
) -> Result<Response, ApiError> {
    let scope = (!account.is_admin).then_some(account.id);
    serve(app, scope, query, headers, draining).await
}

/// The stream of one account's events (`None`: of every account), with
/// the API's parameters and rules; the console's stream is this too.
pub async fn serve(
    app: AppRef,
    account: Option<Uuid>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    draining: Option<Extension<Draining>>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query string: {e}")))?;
    if let Some(k) = q.keys().find(|k| !STREAM_PARAMS.contains(&k.as_str())) {
        return Err(ApiError::invalid_field(
            k.clone(),
            format!(
                "unknown parameter {k:?}; the stream takes {}",
                STREAM_PARAMS.join(" and ")
            ),
        ));
    }
    let types = q.get("types").map(|t| parse_types(t)).transpose()?;
    let after = parse_last_id(&headers, &q)?;
    let filter = Filter { account, types };
    let stream = app
        .events
        .open(filter, after, draining.map(|Extension(d)| d.0))
        .await?;
    let events = futures::stream::unfold(stream, |mut s| async move {
        s.next().await.map(|e| (Ok::<_, Infallible>(e), s))
    });
    let mut res = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response();
    let h = res.headers_mut();
    // Proxies that buffer responses (nginx) would hold events back.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    // A stream that ends was cut (slow client, shutdown): its connection
    // goes with it, and the client reconnects on a fresh one.
    h.insert("connection", HeaderValue::from_static("close"));
    Ok(res)
}
