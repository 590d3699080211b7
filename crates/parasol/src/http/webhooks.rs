//! `/v1/webhooks/*`: the account's webhook subscriptions (Parasol's
//! extension; delivery is in crate::webhooks).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Extension;
use parasol_api::{
    Confirmation, CreateWebhookRequest, UpdateWebhookRequest, WebhookDeliveriesResponse,
    WebhookSecretResponse, WebhookTestResponse, WebhooksResponse,
};
use serde_json::json;
use uuid::Uuid;

use super::{ok, path_id, AppRef, Body};
use crate::error::ApiError;
use crate::store::{envelope, Account, Format, WebhookRecord, MAX_WEBHOOKS};
use crate::webhooks::{new_secret, pattern_is_known, ROTATION_GRACE_MS};

/// Longest description kept.
const DESCRIPTION_MAX: usize = 500;

/// Longest URL accepted.
const URL_MAX: usize = 2048;

async fn check_url(app: &AppRef, url: &str) -> Result<String, ApiError> {
    if url.len() > URL_MAX {
        return Err(ApiError::invalid_field(
            "url",
            format!("url is longer than {URL_MAX} characters"),
        ));
    }
    app.webhooks
        .check(url.trim())
        .await
        .map(|u| u.to_string())
        .map_err(|why| ApiError::invalid_field("url", format!("url {why}")))
}

fn check_events(events: &[String]) -> Result<Vec<String>, ApiError> {
    if events.is_empty() {
        return Err(ApiError::invalid_field(
            "events",
            "events must name at least one event type (or \"*\")",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let e = e.trim();
        if !pattern_is_known(e) {
            return Err(ApiError::invalid_field(
                "events",
                format!(
                    "unknown event type {e:?}; known types: {} (or a prefix such as \"instance.*\", or \"*\")",
                    crate::webhooks::TYPES.join(", ")
                ),
            ));
        }
        if !out.iter().any(|o| o == e) {
            out.push(e.to_string());
        }
    }
    Ok(out)
}

fn check_description(d: Option<String>) -> Result<Option<String>, ApiError> {
    let d = d.map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
    if d.as_ref()
        .is_some_and(|d| d.chars().count() > DESCRIPTION_MAX)
    {
        return Err(ApiError::invalid_field(
            "description",
            format!("description is longer than {DESCRIPTION_MAX} characters"),
        ));
    }
    Ok(d)
}

async fn load(app: &AppRef, account: &Account, raw: &str) -> Result<WebhookRecord, ApiError> {
    let id = path_id(raw, "webhook")?;
    app.store
        .get_webhook(account.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// `GET /webhooks`.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    let now = app.clock.now_ms();
    Ok(ok(WebhooksResponse {
        webhooks: app
            .store
            .list_webhooks(account.id)
            .await?
            .iter()
            .map(|w| w.view(now))
            .collect(),
    }))
}

/// `POST /webhooks/create`: answers the secret, this once.
pub async fn create(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<CreateWebhookRequest>,
) -> Result<Response, ApiError> {
    let events = check_events(&req.events)?;
    let description = check_description(req.description)?;
    if req.all_accounts && !account.is_admin {
        return Err(ApiError::forbidden(
            "all_accounts: true needs an admin key; other keys receive their own account's events",
        )
        .with_field("all_accounts"));
    }
    let url = check_url(&app, &req.url).await?;
    let rec = WebhookRecord {
        id: Uuid::new_v4(),
        account_id: Some(account.id),
        url,
        events,
        description,
        enabled: true,
        all_accounts: req.all_accounts,
        format: Format::Standard,
        secret: new_secret(),
        old_secret: None,
        failing_since: None,
        created_at: app.clock.now_ms(),
    };
    if !app.store.insert_webhook(&rec).await? {
        return Err(ApiError::conflict(format!(
            "the account already has {MAX_WEBHOOKS} webhooks, the most it may have; delete one first"
        )));
    }
    tracing::info!(webhook = %rec.id, account = %account.id, "webhook created");
    Ok(ok(WebhookSecretResponse {
        id: rec.id,
        secret: rec.secret,
    }))
}

/// `GET /webhooks/{id}`.
pub async fn info(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let w = load(&app, &account, &id).await?;
    Ok(ok(w.view(app.clock.now_ms())))
}

/// `POST /webhooks/{id}/update`: absent fields are kept.
pub async fn update(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    Body(req): Body<UpdateWebhookRequest>,
) -> Result<Response, ApiError> {
    let mut w = load(&app, &account, &id).await?;
    if let Some(events) = &req.events {
        w.events = check_events(events)?;
    }
    if req.description.is_some() {
        w.description = check_description(req.description)?;
    }
    if let Some(url) = &req.url {
        w.url = check_url(&app, url).await?;
    }
    if let Some(enabled) = req.enabled {
        if enabled && !w.enabled {
            // A fresh start: the failures that disabled it are forgiven.
            w.failing_since = None;
        }
        w.enabled = enabled;
    }
    let now = app.clock.now_ms();
    if !app.store.update_webhook(&w, now).await? {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(ok(w.view(now)))
}

/// `POST /webhooks/{id}/delete`.
pub async fn delete(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "webhook")?;
    if !app.store.delete_webhook(account.id, id).await? {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(ok(Confirmation {
        id,
        status: "deleted".into(),
    }))
}

/// `POST /webhooks/{id}/rotate-secret`: a new secret, answered this once;
/// the old one keeps signing (beside it) for a day.
pub async fn rotate_secret(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut w = load(&app, &account, &id).await?;
    let now = app.clock.now_ms();
    let new = new_secret();
    let old = std::mem::replace(&mut w.secret, new.clone());
    w.old_secret = Some((old, now + ROTATION_GRACE_MS));
    if !app.store.update_webhook(&w, now).await? {
        return Err(ApiError::not_found("webhook"));
    }
    tracing::info!(webhook = %w.id, "webhook secret rotated");
    Ok(ok(WebhookSecretResponse {
        id: w.id,
        secret: new,
    }))
}

/// `POST /webhooks/{id}/test`: queues a `ping` for this endpoint only;
/// its attempt appears under `deliveries`.
pub async fn test(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let w = load(&app, &account, &id).await?;
    if !w.enabled {
        return Err(ApiError::conflict(
            "the webhook is disabled; enable it before testing it",
        ));
    }
    let now = app.clock.now_ms();
    let event = Uuid::new_v4();
    let data = json!({ "webhook_id": w.id, "message": "ping from parasol" });
    let body = envelope(event, "ping", Some(account.id), &data, now);
    app.store
        .queue_delivery(w.id, event, "ping", &body, now)
        .await?;
    Ok(ok(WebhookTestResponse {
        id: w.id,
        event_id: event,
        status: "queued".into(),
    }))
}

/// `GET /webhooks/{id}/deliveries?limit=`: attempts, newest first.
pub async fn deliveries(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let w = load(&app, &account, &id).await?;
    let limit = match q.get("limit") {
        None => 50,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| {
                ApiError::invalid_field("limit", "limit must be a whole number from 1 to 1000")
            })?,
    };
    Ok(ok(WebhookDeliveriesResponse {
        deliveries: app.store.list_attempts(w.id, limit).await?,
    }))
}
